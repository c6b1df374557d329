"""Connection and request limits for the model server, below the ASGI app.

uvicorn bounds neither a request's header block nor the time a client may take to send it:
an 8 MB header was accepted, four 64 MB headers took the server from 97 to 410 MB of its
512 Mi, and a connection that sent half its headers, or declared a body and never sent it,
was held indefinitely. ``guarded_protocol`` wraps uvicorn's httptools protocol with:

- a cap on the request line plus headers (431 once exceeded, before more is buffered), and
  on their number (431);
- a deadline to send the headers, from the connection's (or request's) first byte, and another
  to send the body once the headers are in (408, then the connection is closed);

and ``limit_requests`` caps the requests in flight with a JSON 503 and ``Retry-After``. Health
and metrics routes are exempt: a busy server is not a dead one. uvicorn's own
``limit_concurrency`` caps connections (its plain 503).

Header bytes are counted as they arrive, so one read (at most 256 KiB with uvloop) may be
buffered before a request is refused. A pipelining client's next request may be counted
together with the previous body's tail; mco's router does not pipeline.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ConnectionLimits", "guarded_protocol", "limit_requests"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_HEADER_END = b"\r\n\r\n"


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int = 16 * 1024  # request line + headers; Node.js and nginx use 8-16 KiB
    max_headers: int = 100  # Apache's LimitRequestFields
    header_timeout: float = 10.0  # first byte of a request (or the connection) to the end of its headers
    body_timeout: float = 30.0  # end of the headers to the end of the body (1 MiB at 35 KB/s)
    keep_alive: int = 30  # idle seconds between requests on one connection
    max_connections: int = 512  # uvicorn's limit_concurrency
    max_requests_in_flight: int = 64  # beyond this, a JSON 503 with Retry-After
    exempt_paths: tuple[str, ...] = ("/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready")


def limit_requests(app: ASGIApp, limits: ConnectionLimits) -> ASGIApp:
    """``app`` with at most ``limits.max_requests_in_flight`` HTTP requests at once; more get a 503."""
    in_flight = 0
    body = json.dumps({"error": f"the model server is at its limit of {limits.max_requests_in_flight} "
                                "requests in flight; retry shortly"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"retry-after", b"1")]

    async def limited(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal in_flight
        if scope["type"] != "http" or scope["path"] in limits.exempt_paths:
            await app(scope, receive, send)
            return
        if in_flight >= limits.max_requests_in_flight:
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        in_flight += 1
        try:
            await app(scope, receive, send)
        finally:
            in_flight -= 1

    return limited


def guarded_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with header limits and read deadlines (see module docstring)."""
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _reading_headers = True
        _header_bytes = 0
        _tail = b""
        _refused = False

        # --- deadlines ---------------------------------------------------------------------
        def _arm(self, seconds: float, what: str) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expired, what)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self, what: str) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            # Answer 408 only if no response is under way on this connection.
            if what == "headers":
                may_answer = self.cycle is None or self.cycle.response_complete
            else:
                may_answer = self.cycle is None or not self.cycle.response_started
            if may_answer:
                seconds = limits.header_timeout if what == "headers" else limits.body_timeout
                self._refuse(408, f"the request's {what} did not arrive within {seconds:g} s")
            else:
                self.transport.close()

        def _refuse(self, status: int, message: str) -> None:
            """Answer ``status`` with a JSON error and close: the request is not handed to the app."""
            self._refused = True
            self._disarm()
            body = json.dumps({"error": message}).encode()
            self.transport.write(b"".join([
                STATUS_LINE[status], b"content-type: application/json\r\n",
                b"content-length: ", str(len(body)).encode(), b"\r\nconnection: close\r\n\r\n", body]))
            self.transport.close()
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.disconnected = True
                self.cycle.message_event.set()

        # --- connection --------------------------------------------------------------------
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm(limits.header_timeout, "headers")

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._reading_headers:
                if self._deadline is None:  # the first byte after an idle keep-alive: a new request
                    self._arm(limits.header_timeout, "headers")
                window = self._tail + data
                end = window.find(_HEADER_END)
                self._header_bytes += len(data) if end < 0 else end + len(_HEADER_END) - len(self._tail)
                self._tail = window[-(len(_HEADER_END) - 1):]
                if self._header_bytes > limits.max_header_bytes:
                    self._refuse(431, f"the request line and headers exceed {limits.max_header_bytes} bytes")
                    return
            super().data_received(data)

        # --- parser callbacks --------------------------------------------------------------
        def on_message_begin(self) -> None:
            if not self._refused:
                super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            if not self._refused:
                super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            if not self._refused:
                super().on_header(name, value)

        def on_headers_complete(self) -> None:
            if self._refused:
                return
            if len(self.headers) > limits.max_headers:
                self._refuse(431, f"the request has {len(self.headers)} headers; at most {limits.max_headers}")
                return
            self._reading_headers = False
            self._arm(limits.body_timeout, "body")
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if not self._refused:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if self._refused:
                return
            self._disarm()  # the app has the whole request; its own time is not the client's
            # Whatever arrives next is the next request's: its first byte arms the header deadline.
            self._reading_headers, self._header_bytes, self._tail = True, 0, b""
            super().on_message_complete()

    return GuardedHttpToolsProtocol
