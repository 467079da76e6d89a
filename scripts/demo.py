"""`make demo`: bake the default service, build its demo model, serve it on localhost.

Bakes into ./.demo (replaced on each run), builds the model with the project's
own script, starts the service in the foreground and prints how to call it.
Stop it with Ctrl-C (it drains and exits 0). HOST and PORT may be overridden:
`make demo PORT=9000`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".demo"


def main() -> int:
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    shutil.rmtree(OUT, ignore_errors=True)
    project = Path(cookiecutter(str(ROOT), no_input=True, output_dir=str(OUT)))
    env = {
        **os.environ,
        "PYTHONPATH": str(project / "src"),
        "AI_SERVICE_HOST": host,
        "AI_SERVICE_PORT": port,
        "AI_SERVICE_LOG_JSON": "false",
    }
    subprocess.run([sys.executable, "scripts/make_demo_model.py"], cwd=project, env=env, check=True)
    url = f"http://{host}:{port}"
    print(
        f"""
Baked the default service into {project.relative_to(ROOT)} and built its demo model.
Serving on {url} (Ctrl-C to stop). Try, from another terminal:

  curl -s {url}/health/ready
  python -c "from PIL import Image; Image.new('RGB', (64, 64), 'red').save('red.png')"
  curl -s -F file=@red.png "{url}/v1/classify?k=3"
  curl -s {url}/v2/models/ai-service
  curl -s {url}/metrics | grep ^inference_
  open {url}/docs
""",
        flush=True,
    )
    try:
        return subprocess.run([sys.executable, "-m", "ai_service"], cwd=project, env=env).returncode
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
