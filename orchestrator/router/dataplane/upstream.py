"""Upstream side of the data plane: a keep-alive connection pool per target.

``Pool.send`` writes one request on an idle kept-alive connection (or a new one) and
calls ``on_done`` exactly once, synchronously from the protocol callbacks, with either
the whole answer ``(status, headers, body)`` or an ``UpstreamError``. The answer is
parsed by httptools (llhttp) and buffered whole, up to ``max_response_bytes``, before
the client gets a byte: that is what lets a reset mid-response be retried elsewhere.

Failure kinds (``UpstreamError.kind``):

* ``connect``: refused or unreachable; the request was never sent;
* ``timeout``: the per-try deadline passed (one timer per try); ``own_stall`` says the
  router's own event loop stalled during the try, so the cloud is not to blame;
* ``reset``: the connection broke before the answer was complete, or the upstream spoke
  broken HTTP;
* ``too_large``: the answer is larger than ``max_response_bytes`` (not retried).

A kept-alive connection that the upstream closed while it sat idle fails the next
request written on it before any byte comes back; such a request is replayed once on a
fresh connection when the caller says it may be (``replayable``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

import httptools

from orchestrator.router.asgi import Headers, Reply

__all__ = ["Outcome", "Pool", "UpstreamError"]


class UpstreamError(Exception):
    __slots__ = ("kind", "own_stall")

    def __init__(self, kind: str, detail: str, *, own_stall: bool = False) -> None:
        super().__init__(detail)
        self.kind = kind
        self.own_stall = own_stall


Outcome = Reply | UpstreamError
OnDone = Callable[[Outcome], None]
# (the time a try started, loop time) -> did the router's own loop stall since then?
StallCheck = Callable[[float], bool]

_IDLE_S = 4.0  # below uvicorn's 5 s keep-alive: an idle connection is dropped before the server drops it


class _Exchange:
    """One request on one connection: what to send, whom to tell, and by when."""

    __slots__ = ("deadline", "head_only", "on_done", "replayable", "request", "started", "timer")

    def __init__(self, request: bytes, on_done: OnDone, deadline: float, started: float, head_only: bool,
                 replayable: bool) -> None:
        self.request = request
        self.on_done = on_done
        self.deadline = deadline
        self.started = started
        self.head_only = head_only
        self.replayable = replayable
        self.timer: asyncio.TimerHandle | None = None


class _Connection(asyncio.Protocol):
    """One kept-alive connection to a target, parsing answers with llhttp's callbacks."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: _Exchange | None = None
        self.reused = False
        self.idle_since = 0.0
        self.closed = False
        self._reset_answer()

    def _reset_answer(self) -> None:
        self.got_bytes = False
        self.status = 0
        self.headers: Headers = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.headers_done = False
        self.framed = False  # Content-Length or chunked: the end is in the stream, not at close

    # -- asyncio.Protocol -----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.exchange is None:  # bytes nobody asked for: this connection cannot be trusted
            self.close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            pass  # a callback already failed the exchange (answer too large)
        except httptools.HttpParserError as exc:
            self._fail("reset", f"the upstream answered with broken HTTP: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.exchange is not None:
            if self.headers_done and not self.framed:
                self._finish()  # an answer delimited by the end of the connection
            else:
                self._fail("reset", "the connection closed before the answer was complete")

    # -- llhttp callbacks -----------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lname = name.lower()
        if lname == b"content-length":
            self.framed = True
            if value.isdigit() and int(value) > self.pool.max_response_bytes:
                self._too_large()
        elif lname == b"transfer-encoding":
            self.framed = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True
        if self.exchange is not None and (self.exchange.head_only or self.status in (204, 304)):
            self.framed = True
            self._finish(reusable=False)  # an answer without a body: llhttp cannot know that for HEAD

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.pool.max_response_bytes:
            self._too_large()
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.exchange is not None:
            self._finish()

    # -- one exchange ---------------------------------------------------------------
    def start(self, exchange: _Exchange, loop: asyncio.AbstractEventLoop) -> None:
        assert self.transport is not None
        self.exchange = exchange
        self._reset_answer()
        exchange.timer = loop.call_at(exchange.deadline, self._timeout)
        self.transport.write(exchange.request)

    def _too_large(self) -> None:
        self._fail("too_large", f"the upstream answer is larger than {self.pool.max_response_bytes} bytes")
        raise httptools.HttpParserCallbackError("answer too large")

    def _timeout(self) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        stalled = self.pool.stalled(exchange.started)
        self._fail("timeout", "per-try timeout", own_stall=stalled)

    def _finish(self, *, reusable: bool = True) -> None:
        exchange = self.exchange
        assert exchange is not None
        self.exchange = None
        if exchange.timer is not None:
            exchange.timer.cancel()
        answer = (self.status, self.headers, b"".join(self.chunks))
        if reusable and not self.closed and self.parser.should_keep_alive():
            self.pool.release(self)
        else:
            self.close()
        exchange.on_done(answer)

    def _fail(self, kind: str, detail: str, *, own_stall: bool = False) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        self.exchange = None
        if exchange.timer is not None:
            exchange.timer.cancel()
        self.close()
        if kind == "reset" and self.reused and not self.got_bytes and exchange.replayable:
            # most likely the upstream closed this idle connection as we wrote: once more, on a new one
            exchange.replayable = False
            self.pool.connect_and_start(exchange)
            return
        exchange.on_done(UpstreamError(kind, detail, own_stall=own_stall))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.abort()


class Pool:
    """Kept-alive connections to one target (``base_url``), reused last-in first-out."""

    def __init__(self, base_url: str, *, per_try_timeout_s: float, connect_timeout_s: float,
                 max_response_bytes: int, stalled: StallCheck) -> None:
        parts = urlsplit(base_url)
        self.base_url = base_url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if parts.scheme == "https" else None
        self.prefix = parts.path.rstrip("/").encode()
        self.host_header = b"host: " + parts.netloc.encode() + b"\r\n"
        self.per_try_timeout_s = per_try_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_response_bytes = max_response_bytes
        self.stalled = stalled
        self.idle: list[_Connection] = []
        self.busy: set[_Connection] = set()
        self.loop = asyncio.get_running_loop()
        self._connecting: set[asyncio.Task[None]] = set()

    def request_bytes(self, method: bytes, target: bytes, headers: bytes, body: bytes) -> bytes:
        return b"".join((method, b" ", self.prefix, target, b" HTTP/1.1\r\n", self.host_header, headers,
                         b"content-length: ", str(len(body)).encode(), b"\r\n\r\n", body))

    def send(self, request: bytes, on_done: OnDone, *, head_only: bool = False, replayable: bool = False) -> None:
        """Send ``request`` (from ``request_bytes``); ``on_done`` gets the answer or the failure."""
        loop = self.loop
        now = loop.time()
        exchange = _Exchange(request, on_done, now + self.per_try_timeout_s, now, head_only, replayable)
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if now - conn.idle_since > _IDLE_S:
                conn.close()
                continue
            conn.reused = True
            self.busy.add(conn)
            conn.start(exchange, loop)
            return
        self.connect_and_start(exchange)

    def connect_and_start(self, exchange: _Exchange) -> None:
        task = self.loop.create_task(self._connect(exchange))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, exchange: _Exchange) -> None:
        loop = self.loop
        budget = min(self.connect_timeout_s, max(0.0, exchange.deadline - loop.time()))
        try:
            async with asyncio.timeout(budget):
                _, conn = await loop.create_connection(lambda: _Connection(self), self.host, self.port, ssl=self.ssl)
        except TimeoutError:
            own = self.stalled(exchange.started)
            exchange.on_done(UpstreamError("timeout", "connect timeout", own_stall=own))
            return
        except OSError as exc:
            exchange.on_done(UpstreamError("connect", f"{type(exc).__name__}: {exc.strerror or exc}"))
            return
        if loop.time() >= exchange.deadline:
            conn.close()
            exchange.on_done(UpstreamError("timeout", "per-try timeout", own_stall=self.stalled(exchange.started)))
            return
        self.busy.add(conn)
        conn.start(exchange, loop)

    def release(self, conn: _Connection) -> None:
        self.busy.discard(conn)
        conn.idle_since = self.loop.time()
        self.idle.append(conn)

    def forget(self, conn: _Connection) -> None:
        self.busy.discard(conn)
        # (a closed connection left in ``idle`` is skipped by ``send``)

    def close(self) -> None:
        for conn in [*self.idle, *self.busy]:
            conn.close()
        self.idle.clear()
        for task in self._connecting:
            task.cancel()
