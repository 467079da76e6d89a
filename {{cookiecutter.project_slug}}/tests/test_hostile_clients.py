"""Hostile clients against a real server: stalled uploads, slowloris, oversized headers.

These talk raw HTTP over real sockets (asyncio streams) to uvicorn configured as
``python -m {{ cookiecutter.package_name }}`` configures it (``guarded_config``), served in a
thread; the ``heavy`` ones start the real entry point in a process of its own
(signals, exit status, the port bind).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }} import __main__ as entry
from {{ cookiecutter.package_name }}.logging_config import configure_logging
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, Settings

from . import workload_requests as workload
from .conftest import free_port, make_settings, run_async
from .test_resilience import start_server, wait_ready

ACCESS_LOGGER = "{{ cookiecutter.package_name }}.access"
# the route's own upload type: an image for classification, JSON elsewhere
UPLOAD_TYPE = "{{ 'application/octet-stream' if cookiecutter.workload == 'vision' else 'application/json' }}"


@contextmanager
def guarded_server(settings: Settings) -> Iterator[tuple[str, int, FastAPI]]:
    """The app behind uvicorn as __main__ configures it, in a thread; yields host, port, app."""
    app = create_app(settings)
    server = uvicorn.Server(entry.guarded_config(settings, app))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield settings.host, settings.port, app
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def server_settings(model_path: Path, **overrides: Any) -> Settings:
    return make_settings(model_path, host="127.0.0.1", port=free_port(), **overrides)


# One server for the tests below (a model load each would cost more than the tests): a
# queue of 2, short body and header deadlines, a cap of 64 connections.
BODY_TIMEOUT_S = 1.0
HEADER_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 64


@pytest.fixture(scope="module")
def server(model_path: Path) -> Iterator[tuple[str, int]]:
    settings = server_settings(
        model_path,
        **workload.capacity(1, 2),
        body_read_timeout_s=BODY_TIMEOUT_S,
        header_timeout_s=HEADER_TIMEOUT_S,
        keep_alive_timeout_s=0.5,
        max_connections=MAX_CONNECTIONS,
    )
    with guarded_server(settings) as (host, port, _app):
        yield host, port


async def response_of(
    reader: asyncio.StreamReader, timeout_s: float
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response with a Content-Length."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def stalled_upload(
    host: str, port: int, declared: int = 100_000, sent: bytes = b"0123456789"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Headers and the first bytes of a body, then nothing."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"POST {workload.ROUTE} HTTP/1.1\r\nHost: test\r\nContent-Type: {UPLOAD_TYPE}\r\n"
        f"Content-Length: {declared}\r\n\r\n".encode()
        + sent
    )
    await writer.drain()
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader, timeout_s: float) -> bool:
    try:
        await asyncio.wait_for(reader.read(), timeout_s)  # everything up to EOF
    except (TimeoutError, ConnectionError):
        return False
    return True


def test_stalled_uploads_hold_no_queue_slot_and_time_out_with_408(
    server: tuple[str, int],
) -> None:
    """More stalled uploads than the queue holds: inference still answers, then each gets 408."""
    host, port = server

    async def scenario() -> tuple[list[int], httpx.Response, list[Any]]:
        stalled = [await stalled_upload(host, port) for _ in range(12)]
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as client:
            answered = [(await workload.send(client, i)).status_code for i in range(3)]
            ready = await client.get("/health/ready")
        refusals = [await response_of(reader, 5) for reader, _ in stalled]
        for _, writer in stalled:
            writer.close()
        return answered, ready, refusals

    answered, ready, refusals = run_async(scenario())
    assert answered == [200, 200, 200]
    assert ready.status_code == 200
    for status, headers, body in refusals:
        assert status == 408 and headers["connection"] == "close"
        error = json.loads(body)["error"]
        assert error["code"] == "body_read_timeout" and "BODY_READ_TIMEOUT_S" in error["message"]


def test_slowloris_headers_get_408_and_lose_their_connection(server: tuple[str, int]) -> None:
    host, port = server

    async def slowloris() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-A: ")
        return reader, writer

    async def drip(writer: asyncio.StreamWriter) -> None:
        for _ in range(30):  # one byte every 0.1 s: the headers never end
            await asyncio.sleep(0.1)
            if writer.is_closing():
                return
            writer.write(b"a")

    async def scenario() -> tuple[list[bool], list[int], bool, float]:
        started = time.monotonic()
        connections = [await slowloris() for _ in range(50)]
        drips = [asyncio.create_task(drip(writer)) for _, writer in connections]
        closed = [await closed_by_server(reader, 3) for reader, _ in connections]
        elapsed = time.monotonic() - started
        for task in drips:
            task.cancel()
        # an idle connection (nothing sent) and an idle keep-alive one are closed too
        idle_reader, _ = await asyncio.open_connection(host, port)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, _ = await response_of(reader, 3)
        idle_closed = await closed_by_server(idle_reader, 3)
        return closed, [status], idle_closed and await closed_by_server(reader, 3), elapsed

    closed, statuses, idle_closed, elapsed = run_async(scenario())
    assert all(closed), f"{closed.count(False)} of 50 slowloris connections still open"
    assert elapsed < HEADER_TIMEOUT_S + 1.5
    assert statuses == [200] and idle_closed


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"GET /health/live HTTP/1.1\r\nHost: t\r\n" + b"X-N: 1\r\n" * 200 + b"\r\n", 431),
        (b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (4 << 20) + b"\r\n\r\n", 431),
        (b"GET /health/live?" + b"q" * 20_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    ],
    ids=["200-headers", "4mb-header", "20kb-url"],
)
def test_oversized_request_heads_are_refused_before_the_app(
    server: tuple[str, int], request_head: bytes, status: int
) -> None:
    host, port = server

    async def scenario() -> tuple[int, float, int]:
        reader, writer = await asyncio.open_connection(host, port)
        started = time.monotonic()
        writer.write(request_head)
        sending = asyncio.create_task(writer.drain())  # the server answers before the end
        with_status, _, _ = await response_of(reader, 5)
        elapsed = time.monotonic() - started
        writer.close()
        with contextlib.suppress(ConnectionError):
            await sending
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            probe = await client.get("/health/ready")
        return with_status, elapsed, probe.status_code

    got, elapsed, probe = run_async(scenario())
    assert got == status
    assert elapsed < 1.0  # refused as the bytes arrive, not after parsing all of them
    assert probe == 200


def test_connections_beyond_the_cap_leave_the_health_probes_answering(
    server: tuple[str, int],
) -> None:
    host, port = server

    async def request(path: str) -> int:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        status, _, _ = await response_of(reader, 5)
        writer.close()
        return status

    async def scenario() -> tuple[int, int, int]:
        # idle connections beyond the cap (closed by the header deadline, soon after)
        held = [await asyncio.open_connection(host, port) for _ in range(MAX_CONNECTIONS + 8)]
        await asyncio.sleep(0.1)
        answers = await request("/health/live"), await request("/v1/models")
        for _, writer in held:
            writer.close()
        await asyncio.sleep(0.2)
        return *answers, await request("/health/live")

    probe, other, after = run_async(scenario())
    assert (probe, other, after) == (200, 503, 200)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_upload_dropped_mid_body_is_one_499_log_line(server: tuple[str, int]) -> None:
    host, port = server
    records = Records()
    logging.getLogger().addHandler(records)  # after create_app() set the handlers

    async def scenario() -> None:
        _, writer = await stalled_upload(host, port)
        await asyncio.sleep(0.2)
        writer.close()
        await asyncio.sleep(0.3)

    try:
        run_async(scenario())
    finally:
        logging.getLogger().removeHandler(records)
    # the upload's lines only: the fixture's last readiness probe may log after its answer
    access = [
        record
        for record in records.records
        if record.name == ACCESS_LOGGER and workload.ROUTE in record.getMessage()
    ]
    assert [record.status for record in access] == [499]  # type: ignore[attr-defined]
    assert not [r for r in records.records if r.exc_info or "ClientDisconnect" in r.getMessage()]


def test_no_redirect_builds_its_location_from_the_host_header(model_path: Path) -> None:
    settings = make_settings(model_path, api_key="a-secret-key")
    with TestClient(create_app(settings), follow_redirects=False) as client:
        for method in ("GET", "POST"):
            response = client.request(
                method, f"{workload.ROUTE}/", headers={"host": "evil.example"}
            )
            assert response.status_code in {401, 404}, (method, response.status_code)
            assert "location" not in response.headers


def test_plain_text_logs_escape_control_characters(
    model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(model_path, log_json=False)
    configure_logging(settings)
    logging.getLogger(ACCESS_LOGGER).warning("GET %s 404", "/x\nFORGED 200\x1b[31m")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "\x1b" not in out
    assert "/x\\x0aFORGED 200\\x1b[31m" in out


SECRET = "s3cret-key-value"
INVALID: dict[str, dict[str, str]] = {
    "MAX_BODY_BYTES": {"MAX_BODY_BYTES": "12"},
    "LOG_LEVEL": {"LOG_LEVEL": "LOUD"},
    "DEVICE": {"DEVICE": "tpu"},
    "PORT": {"PORT": "-1"},
    "SHUTDOWN_TIMEOUT_S": {"SHUTDOWN_TIMEOUT_S": "soon"},
    # cross-field checks: pydantic's own text quotes every field's input, the key included
{%- if cookiecutter.workload == 'llm' %}
    "CONTEXT_LENGTH": {"CONTEXT_LENGTH": "1"},
{%- else %}
    "MAX_QUEUE_SIZE": {"MAX_QUEUE_SIZE": "1", "MAX_BATCH_SIZE": "4"},
{%- endif %}
}


@pytest.mark.parametrize("name", sorted(INVALID))
@pytest.mark.parametrize("log_json", ["true", "false"])
def test_invalid_settings_are_one_line_without_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, log_json: str
) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}API_KEY", SECRET)
    monkeypatch.setenv(f"{ENV_PREFIX}LOG_JSON", log_json)
    for variable, value in INVALID[name].items():
        monkeypatch.setenv(f"{ENV_PREFIX}{variable}", value)
    entry.get_settings.cache_clear()
    with pytest.raises(SystemExit) as exited:
        entry.load_settings()
    entry.get_settings.cache_clear()
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert exited.value.code == entry.INVALID_SETTINGS
    assert output.count("\n") == 1, output
    assert SECRET not in output and SECRET[:6] not in output
    line = json.loads(output)["message"] if log_json == "true" else output
    assert line.startswith(f"invalid settings: {ENV_PREFIX}{name}")


@pytest.mark.parametrize("key", ["", "   ", "key-with-newline\n", " padded"])
def test_an_empty_or_padded_api_key_fails_startup(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}API_KEY", key)
    monkeypatch.setenv(f"{ENV_PREFIX}LOG_JSON", "false")
    entry.get_settings.cache_clear()
    with pytest.raises(SystemExit):
        entry.load_settings()
    entry.get_settings.cache_clear()
    output = capsys.readouterr().err
    assert output.startswith(f"invalid settings: {ENV_PREFIX}API_KEY: ")
    assert output.count("\n") == 1
    if key.strip():
        assert key.strip() not in output


# --- the real entry point, in a process of its own -----------------------------------------


@pytest.mark.heavy
@pytest.mark.parametrize("workers", [1, 2])
def test_a_busy_port_fails_before_the_model_loads(model_path: Path, workers: int) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = start_server(model_path, port, 0.0, workers=workers)
        output = process.communicate(timeout=60)[0]
    assert process.returncode == 3, output
    assert "address already in use" in output.lower()
    assert "model loaded" not in output and "ready: serving" not in output


def sockets_on_port(port: int, state: str) -> set[int]:
    """Inodes of this machine's TCP sockets on local ``port`` in ``state`` (/proc/net/tcp)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                    found.add(int(fields[9]))
    return found


def socket_owners(parent: int, inodes: set[int]) -> dict[int, int]:
    """How many of these sockets each child process of ``parent`` holds."""
    owners: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) != parent:
                continue
            targets = [link.readlink().name for link in (proc / "fd").iterdir()]
            held = {int(name[8:-1]) for name in targets if name.startswith("socket:[")}
            owners[int(proc.name)] = len(held & inodes)
    return {pid: count for pid, count in owners.items() if count}


@pytest.mark.heavy
@pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT spreads connections on Linux")
def test_connections_opened_at_once_are_spread_over_the_workers(model_path: Path) -> None:
    """With one listening socket shared, the first worker to wake accepted all 16."""
    port = free_port()
    process = start_server(model_path, port, 0.0, workers=2)
    try:
        wait_ready(f"http://127.0.0.1:{port}", process, timeout_s=120)
        deadline = time.monotonic() + 120
        while len(socket_owners(process.pid, sockets_on_port(port, "0A"))) < 2:  # LISTEN
            assert time.monotonic() < deadline, "the second worker never listened"
            time.sleep(0.1)

        async def burst() -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
            opened = await asyncio.gather(
                *(asyncio.open_connection("127.0.0.1", port) for _ in range(16))
            )
            for _, writer in opened:
                writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            for reader, _ in opened:  # answered: each connection is held by a worker now
                assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
            return opened

        async def scenario() -> dict[int, int]:
            opened = await burst()
            owners = socket_owners(process.pid, sockets_on_port(port, "01"))  # ESTABLISHED
            for _, writer in opened:
                writer.close()
            return owners

        owners = run_async(scenario())
    finally:
        process.terminate()
        output = process.communicate(timeout=60)[0]
    assert f"listening on http://127.0.0.1:{port}, 2 worker processes" in output, output[-2000:]
    assert sum(owners.values()) == 16, owners
    assert len(owners) == 2, f"connections per worker: {owners}"


@pytest.mark.heavy
def test_sigterm_with_stalled_and_slow_uploads_exits_within_the_budget(model_path: Path) -> None:
    """The whole shutdown fits SHUTDOWN_TIMEOUT_S + 1 s; uploads in flight get 503, not 500."""
    port = free_port()
    budget_s = 3.0
    process = start_server(
        model_path,
        port,
        workload.SLOW_CALL_S,
        shutdown_timeout_s=budget_s,
        **workload.capacity(2, 16),
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)

        async def slow_upload() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            reader, writer = await stalled_upload("127.0.0.1", port, sent=b"")

            async def trickle() -> None:
                while not reader.at_eof():
                    writer.write(b"0")
                    await asyncio.sleep(0.2)

            asyncio.get_running_loop().create_task(trickle())
            return reader, writer

        async def scenario() -> tuple[list[int], list[int], float]:
            stalled = [await stalled_upload("127.0.0.1", port) for _ in range(50)]
            slow = [await slow_upload() for _ in range(10)]
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                in_flight = [asyncio.create_task(workload.send(client, i)) for i in range(4)]
                await asyncio.sleep(0.3)
                process.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                uploads = [(await response_of(r, 10))[0] for r, _ in stalled + slow]
                answered = [(await task).status_code for task in in_flight]
            await asyncio.to_thread(process.wait, 30)
            return uploads, answered, time.monotonic() - signalled

        uploads, answered, shutdown_s = run_async(scenario())
    finally:
        if process.poll() is None:
            process.kill()
    output = process.communicate()[0]
    print(f"shutdown {shutdown_s:.2f} s with SHUTDOWN_TIMEOUT_S={budget_s:g} and 60 uploads")
    assert process.returncode == 0, output
    assert shutdown_s <= budget_s + 1, output
    assert set(uploads) == {503}
    assert set(answered) <= {200, 503} and 200 in answered


@pytest.mark.heavy
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_exits_at_once(model_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    process = start_server(model_path, port, 2.0, shutdown_timeout_s=60, **workload.capacity(1, 4))
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)

        async def scenario() -> float:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                busy = [asyncio.create_task(workload.send(client, i)) for i in range(3)]
                await asyncio.sleep(0.5)  # the model is in a 2-second call: the drain waits
                process.send_signal(sig)
                await asyncio.sleep(0.3)
                process.send_signal(sig)
                second = time.monotonic()
                await asyncio.to_thread(process.wait, 10)
                exited_s = time.monotonic() - second
                await asyncio.gather(*busy, return_exceptions=True)  # cut off: ReadError
                return exited_s

        after_second_s = run_async(scenario())
    finally:
        if process.poll() is None:
            process.kill()
    output = process.communicate()[0]
    assert process.returncode == 128 + sig, output
    assert after_second_s < 1.0
    assert "exiting at once" in output
