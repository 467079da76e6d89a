"""Listening sockets for several server processes on one port (SO_REUSEPORT, Linux)."""

from __future__ import annotations

import socket
from typing import Any


def port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT: others of this user may bind it too.

    Bound, not listening: it gets no connections until ``listen()``.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class WorkerSocket:
    """What the supervisor hands each worker it starts: unpickled there, a socket of its own.

    Workers sharing one listening socket share it unfairly: the first to wake accepts
    every pending connection (asyncio accepts up to the backlog per wake-up), so clients
    that connect at once may all land on one worker (measured: 16 of 16 on one of two, at
    half the throughput). Each worker (and each replacement uvicorn starts) binds a socket
    of its own on the port instead, with SO_REUSEPORT, and the kernel spreads new
    connections over the listening ones by address hash. uvicorn listens on it only after
    the app's start-up (model loaded, warmed up), so no connection waits on a worker that
    is still loading; a worker's socket closes with it.
    """

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return port_socket, self.address
