"""The default service baked and its demo model built: where the template's benchmarks start.

``bake_default(workdir)`` bakes every default answer into ``workdir``, puts the project's
``src`` on ``PYTHONPATH`` (for the processes it starts) and its ``scripts`` and ``src`` on
``sys.path`` (for this one: ``import bench``, ``benchlib``, ``ai_service``), and builds the
demo model with the project's ``scripts/make_demo_model.py``. Everything runs in this
environment: the template's dev environment holds the services' runtime dependencies.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]


def bake_default(workdir: Path) -> Path:
    project = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(workdir)))
    print(f"baked the default service into {project}", flush=True)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(project / "src"), os.environ.get("PYTHONPATH")])
    )
    sys.path[:0] = [str(project / "scripts"), str(project / "src")]
    subprocess.run([sys.executable, "scripts/make_demo_model.py"], cwd=project, check=True)
    return project
