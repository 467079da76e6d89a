"""The container health check: ready -> exit 0; loading, draining or down -> exit 1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from {{ cookiecutter.package_name }} import healthcheck
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX


class FakeService(BaseHTTPRequestHandler):
    """Answers /health/ready with the status the test sets; anything else is 404."""

    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/health/ready" else 404
        body = b'{"status": "ready"}' if code == 200 else b'{"status": "warming_up"}'
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeService)
    # polled every 20 ms, not 0.5 s: shutdown() waits for the next poll
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    FakeService.status = 200


def environ_for(httpd: ThreadingHTTPServer, host: str = "0.0.0.0") -> dict[str, str]:
    return {f"{ENV_PREFIX}HOST": host, f"{ENV_PREFIX}PORT": str(httpd.server_address[1])}


def test_reads_the_settings_prefix() -> None:
    assert healthcheck.ENV_PREFIX == ENV_PREFIX


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("0.0.0.0", "127.0.0.1"),
        ("", "127.0.0.1"),
        ("::", "127.0.0.1"),
        ("10.1.2.3", "10.1.2.3"),
        ("fd00::1", "[fd00::1]"),
    ],
)
def test_url_targets_the_listening_address(host: str, expected: str) -> None:
    url = healthcheck.ready_url({f"{ENV_PREFIX}HOST": host, f"{ENV_PREFIX}PORT": "9001"})
    assert url == f"http://{expected}:9001/health/ready"


def test_defaults_to_port_8000_on_loopback() -> None:
    assert healthcheck.ready_url({}) == "http://127.0.0.1:8000/health/ready"


def test_ready_service_is_healthy(
    server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in environ_for(server).items():
        monkeypatch.setenv(name, value)
    assert healthcheck.main() == 0


@pytest.mark.parametrize("status", [503, 500])
def test_not_ready_service_is_unhealthy(
    server: ThreadingHTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    status: int,
) -> None:
    FakeService.status = status
    for name, value in environ_for(server).items():
        monkeypatch.setenv(name, value)
    assert healthcheck.main() == 1
    assert str(status) in capsys.readouterr().err


def test_unreachable_service_is_unhealthy() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), FakeService) as closed:
        port = closed.server_address[1]  # bound, then closed: nothing listens there
    ready, detail = healthcheck.check(f"http://127.0.0.1:{port}/health/ready", timeout_s=1.0)
    assert not ready
    assert detail.startswith("unreachable")
