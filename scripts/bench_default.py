"""Bake the default service into a temporary directory and run its benchmark (`make bench`).

    python scripts/bench_default.py [--keep] [bench.py options, e.g. --duration 5]

Steps: bake the template with every default answer, build its demo model
(`scripts/make_demo_model.py`), then run the generated `scripts/bench.py`,
which starts the service itself (batching on, then off), prints the table and
writes `bench.json` and `bench.png` to `bench-results/` here. Everything runs
in this environment (the template's dev environment holds the generated
services' runtime dependencies), with the project's `src` on `PYTHONPATH`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from baked_default import TEMPLATE, bake_default


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the baked project")
    parser.add_argument("--out", type=Path, default=TEMPLATE / "bench-results")
    args, bench_args = parser.parse_known_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-default-"))
    try:
        project = bake_default(workdir)
        args.out.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "scripts/bench.py",
            "--out",
            str(args.out.resolve()),
            *bench_args,
        ]
        return subprocess.run(command, cwd=project, check=False).returncode
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
