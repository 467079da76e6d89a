"""The dead-code scan of a baked project: vulture over src/, tests/ and scripts/.

Code for another workload or option must not survive the post-generation hook,
and nothing the chosen options use may be left behind by a change. Vulture
(static, 60 % confidence and up) finds unused functions, methods, classes,
properties, imports, arguments and unreachable code; its "unused variable" and
"unused attribute" findings are left out, because on this code base they are
the fields of pydantic request models (accepted, validated and documented, but
never read by name), dataclass fields, and attributes set on third-party objects
(onnxruntime session options, tokenizer components): unused by name, not dead.
Names and decorators through which a framework calls the code are listed below.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .conftest import run

# Called by a framework, never by name from the project's code.
FRAMEWORK_NAMES = [
    "pytest_*",  # pytest hooks in conftest.py
    "do_GET",  # http.server handlers (the healthcheck test's fake server)
    "log_message",
    "format",  # logging.Formatter
    "formatMessage",
    "forward",  # torch.nn.Module
    "describe",  # prometheus_client custom collectors
    "collect",
    "lifespan",  # FastAPI
    "data_received",  # asyncio.Protocol
    "GuardedHttpToolsProtocol",  # uvicorn imports it by its string (`http=` in __main__.py)
]
FRAMEWORK_DECORATORS = [
    "@router.*",  # FastAPI routes
    "@health_router.*",
    "@app.*",
    "@field_validator",
    "@model_validator",
    "@pytest.fixture",
]
LEFT_OUT = re.compile(r": unused (variable|attribute) '")


def dead_code(project: Path) -> list[str]:
    """Vulture's findings in a baked project (empty when there is no dead code)."""
    result = run(
        [
            sys.executable,
            "-m",
            "vulture",
            "src",
            "tests",
            "scripts",
            "--min-confidence",
            "60",
            "--ignore-names",
            ",".join(FRAMEWORK_NAMES),
            "--ignore-decorators",
            ",".join(FRAMEWORK_DECORATORS),
        ],
        project,
    )
    if result.returncode not in (0, 3):  # 3: dead code found
        raise RuntimeError(f"vulture failed ({result.returncode}): {result.stderr[-2000:]}")
    return [line for line in result.stdout.splitlines() if line and not LEFT_OUT.search(line)]
