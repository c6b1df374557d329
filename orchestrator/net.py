"""Loopback networking helpers every layer may use: a free port, is a port open, wait for one.

This module sits below everything (it imports only ``orchestrator.errors``), so the router,
the model server and the local stand-ins share one way to find and probe ports.
"""

from __future__ import annotations

import socket
import time

from orchestrator.errors import Unreachable

__all__ = ["free_port", "port_open", "wait_for_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, *, timeout: float = 30.0, what: str = "server") -> None:
    """Return once ``host:port`` accepts connections; ``Unreachable`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        time.sleep(0.05)
    raise Unreachable(f"{what} did not start listening on {host}:{port} within {timeout:.0f} s")
