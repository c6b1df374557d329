"""Registry credentials go only over TLS to the registry's own host (or one the config trusts):
plain HTTP is for loopback registries only, and a Bearer challenge naming a plain-HTTP realm or
a realm on another host is refused before anything is sent there.

The registry here is a real HTTP server on loopback that answers like a token-auth registry
(401 with a Bearer challenge); the "token services" are listening sockets that record whether
anyone connected."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orchestrator.config import RegistryConfig, parse_config
from orchestrator.errors import AccessDenied, ConfigError, Unreachable
from orchestrator.providers.registry import OCIRegistry

PASSWORD = "registry-password-" + "x" * 20


@pytest.mark.parametrize("url", ["registry.example.com:5000", "10.0.0.5:5000", "192.168.1.2", "mco-registry:5000"])
def test_plain_http_is_refused_for_a_registry_not_on_loopback(url):
    with pytest.raises(ConfigError, match=r"clouds\.aws\.registry.*insecure_http.*only for a loopback registry"):
        parse_config({"clouds": {"aws": {"provider": "aws", "registry": {"url": url, "insecure_http": True}}}})


@pytest.mark.parametrize("url", ["127.0.0.1:5001", "localhost:5001", "[::1]:5001", "127.0.0.2:5001",
                                 "http://127.0.0.1:5001"])
def test_plain_http_is_allowed_on_loopback(url):
    assert RegistryConfig(url=url, insecure_http=True).insecure_http


class _Listener:
    """A TCP socket that accepts and records connections, and answers nothing."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def token_service() -> Iterator[_Listener]:
    listener = _Listener()
    yield listener
    listener.close()


def _registry(realm: str) -> tuple[ThreadingHTTPServer, list[str]]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization") or "")
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="reg",scope="registry:catalog:*"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def _catalog(server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch, **extra: object) -> None:
    monkeypatch.setenv("T_TRUST_PW", PASSWORD)
    cfg = RegistryConfig(url=f"127.0.0.1:{server.server_address[1]}", insecure_http=True, auth="basic",
                         username="mco", password_env="T_TRUST_PW", **extra)  # type: ignore[arg-type]
    OCIRegistry("aws", cfg).catalog()


def test_a_plain_http_realm_is_refused_even_on_loopback(token_service, monkeypatch):
    server, seen = _registry(f"http://127.0.0.1:{token_service.port}/token")
    try:
        with pytest.raises(AccessDenied, match="not HTTPS; refusing to send them in the clear") as err:
            _catalog(server, monkeypatch)
    finally:
        server.shutdown()
    assert PASSWORD not in str(err.value)
    assert token_service.connections == 0 and seen == [""]  # nothing was sent, to either


def test_a_realm_on_another_host_is_refused_unless_the_config_trusts_it(token_service, monkeypatch):
    # localhost is not the registry's host (127.0.0.1) by name: the check is on the host the
    # registry is configured with, not on where names resolve.
    server, _ = _registry(f"https://localhost:{token_service.port}/token")
    try:
        with pytest.raises(AccessDenied, match="another host, localhost") as err:
            _catalog(server, monkeypatch)
        assert "token_realm_hosts" in (err.value.hint or "")
        assert token_service.connections == 0
        # trusted: mco goes to the token service (which speaks no TLS here, so the push fails there)
        with pytest.raises(Unreachable):
            _catalog(server, monkeypatch, token_realm_hosts=["localhost"])
        assert token_service.connections == 1
    finally:
        server.shutdown()


def test_a_realm_on_the_registry_host_over_https_is_used(token_service, monkeypatch):
    server, _ = _registry(f"https://127.0.0.1:{token_service.port}/token")
    try:
        with pytest.raises(Unreachable):  # the listener speaks no TLS; what matters is that it was asked
            _catalog(server, monkeypatch)
    finally:
        server.shutdown()
    assert token_service.connections == 1
