"""Container health check: exit 0 when the service is ready to serve, 1 otherwise.

The Dockerfile's HEALTHCHECK and compose's ``healthcheck`` run this module inside the
container. It asks ``/health/ready``, not ``/health/live``: a container counts as healthy
once it can serve (model loaded and warmed up, not draining), so ``docker compose up --wait``
and ``depends_on: condition: service_healthy`` wait for the model. Kubernetes does not use
it; its probes call the HTTP endpoints directly.

It runs every few seconds, so it uses the standard library only (no settings import) and
reads HOST and PORT from the environment, as the container sets them.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

# the settings' prefix: the package name in capitals (see settings.ENV_PREFIX)
ENV_PREFIX = f"{(__package__ or '').upper()}_"
DEFAULT_PORT = "8000"
WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}
TIMEOUT_S = 3.0


def ready_url(environ: Mapping[str, str]) -> str:
    """The readiness URL of the server this environment configures."""
    host = environ.get(f"{ENV_PREFIX}HOST", "").strip()
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"  # listening on every interface: loopback reaches it
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    port = environ.get(f"{ENV_PREFIX}PORT", DEFAULT_PORT).strip()
    return f"http://{host}:{port}/health/ready"


def check(url: str, timeout_s: float = TIMEOUT_S) -> tuple[bool, str]:
    """(ready, what the server said); never raises."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = response.read(200).decode(errors="replace")
            return response.status == 200, f"{response.status} {body}"
    except urllib.error.HTTPError as exc:
        return False, f"{exc.code} {exc.read(200).decode(errors='replace')}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"unreachable: {getattr(exc, 'reason', exc)}"


def main() -> int:
    url = ready_url(os.environ)
    ready, detail = check(url)
    # Docker keeps this output: `docker inspect` shows it under State.Health
    print(f"{url}: {detail}", file=sys.stdout if ready else sys.stderr)
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
