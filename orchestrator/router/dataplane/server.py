"""Client side of the data plane: an asyncio protocol per connection, llhttp's callbacks.

Per request: the request line and headers are counted against ``limits.max_header_bytes``
and ``limits.max_headers`` (431), the body against ``max_body_bytes`` (413), each phase
against its deadline (408: ``header_timeout_s`` from the request's first byte,
``body_timeout_s`` from its last header; ``idle_timeout_s`` closes a quiet kept-alive
connection). A single sweep every ``_SWEEP_S`` checks the deadlines of every connection,
so no timer is armed per request. The request is handed on only once its body is
complete: a body cut short by a client that went away is never forwarded.

Then: ``/admin/*`` and ``/metrics`` go to the admin API (``AdminApi``, through a
minimal ASGI adapter); anything else is shed with 503 + ``Retry-After`` when
``limits.max_concurrency`` requests are in flight or the loop lags (``overload.py``),
else forwarded (``forward.py``). Headers both ways lose the hop-by-hop ones and every
header any ``Connection`` line names; ``X-Forwarded-For`` gets the client's address;
the answer gets ``x-mco-cloud`` naming the cloud that answered.

The hop rule (``headers.HOP_HEADER``): every forwarded request carries ``x-mco-hop`` with
the names of the routers it came through, this one last. A request that arrives with it
already came through an mco router, which chose this cloud: it is served by this router's
own cloud only (``Forwarder.forward(hopped=True)``), never spilled again, and answered 503
+ ``Retry-After`` at once when that cloud has no healthy target, so the router before can
try its next cloud. One whose ``x-mco-hop`` names this router is a loop: 508.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import httptools

from orchestrator.config import RouterConfig, RouterTargetConfig
from orchestrator.router.admin import AdminApi
from orchestrator.router.asgi import Headers, Reply, json_reply
from orchestrator.router.dataplane.forward import Answer, Forwarder
from orchestrator.router.dataplane.overload import LoopMonitor
from orchestrator.router.feedback import REQUEST_ID_HEADER, handle_feedback
from orchestrator.router.headers import CLOUD_HEADER_BYTES, HOP_HEADER_BYTES, ROUTER_HEADER_BYTES
from orchestrator.router.state import Router

__all__ = ["DataPlane", "DataPlaneThread", "serve"]

# RFC 9110 section 7.6.1: connection-specific fields a proxy must not forward
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
                        b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade"})
# what the router sets itself on the way up (Host, Content-Length, X-Forwarded-For) or
# must not pass on (Expect: the body is already read)
_REQUEST_DROP = HOP_BY_HOP | {b"host", b"content-length", b"expect", b"x-forwarded-for", HOP_HEADER_BYTES}
_RESPONSE_DROP = HOP_BY_HOP | {b"content-length", CLOUD_HEADER_BYTES, ROUTER_HEADER_BYTES, REQUEST_ID_HEADER}
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_SWEEP_S = 0.25
# answered by the router itself, never forwarded: a global entry checks the router, not a model
_OWN_PROBES = frozenset({b"/healthz", b"/readyz", b"/readyz/local"})
_LINGER_S = 2.0  # after refusing a request, read and drop what the client still sends, then close
_IDLE, _HEAD, _BODY, _DONE = range(4)  # where the parser is in the current request


class _Reject(Exception):
    """A request the router answers itself, before forwarding, and then closes the connection."""

    def __init__(self, status: int, error: str, counter: str) -> None:
        super().__init__(error)
        self.status, self.error, self.counter = status, error, counter


class _Request:
    __slots__ = ("body", "connection", "headers", "keep_alive", "method", "url")

    def __init__(self) -> None:
        self.method = b""
        self.url = b""
        self.headers: Headers = []
        self.connection: set[bytes] = set()  # header names every Connection line names
        self.body: list[bytes] = []
        self.keep_alive = True


class ClientConnection(asyncio.Protocol):
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.limits = plane.cfg.limits
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = b""
        self.phase = _IDLE
        self.deadline = 0.0
        self.head_bytes = 0
        self.header_count = 0
        self.body_bytes = 0
        self.request = _Request()
        self.busy = False  # a request is being answered
        self.queue: list[_Request] = []  # complete requests behind it (pipelining)
        self.closed = False
        self.draining = False
        self.reject: _Reject | None = None
        self.task: asyncio.Task[None] | None = None  # the request being answered (a strong reference)

    # -- asyncio.Protocol -----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if peer else b""
        self.deadline = self.plane.loop.time() + self.limits.idle_timeout_s
        self.plane.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.plane.connections.discard(self)
        if self.draining:
            return
        if self.phase == _BODY or (self.phase == _HEAD and self.head_bytes):
            self.plane.router.client_errors["client_gone"] += 1  # what it sent is dropped, never forwarded

    def data_received(self, data: bytes) -> None:
        if self.draining:
            return
        if self.phase == _IDLE:
            self.phase = _HEAD
            self.deadline = self.plane.loop.time() + self.limits.header_timeout_s
        if self.phase == _HEAD:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # an upgrade (websocket, h2c) is not proxied: the request itself is answered if complete
            if self.phase != _DONE:
                self._refuse(_Reject(400, "protocol upgrades are not proxied", "bad_request"))
            return
        except httptools.HttpParserError as exc:
            self._refuse(self.reject or _Reject(400, f"malformed HTTP request: {exc}", "bad_request"))
            return
        if self.phase == _HEAD and self.head_bytes > self.limits.max_header_bytes:
            # llhttp buffers a header until it is complete: the byte count of the head so far is the guard
            self._refuse(_Reject(431, f"request headers are larger than {self.limits.max_header_bytes} bytes",
                                 "header_too_large"))

    # -- llhttp callbacks -----------------------------------------------------------
    def on_message_begin(self) -> None:
        self.request = _Request()
        self.header_count = 0
        self.body_bytes = 0
        if self.phase != _HEAD:  # a pipelined request right behind the last one
            self.phase = _HEAD
            self.head_bytes = 0
            self.deadline = self.plane.loop.time() + self.limits.header_timeout_s

    def on_url(self, url: bytes) -> None:
        self.request.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > self.limits.max_headers:
            self._fail_in_callback(_Reject(431, f"more than {self.limits.max_headers} request headers",
                                           "header_too_large"))
        lname = name.lower()
        if lname == b"connection":
            self.request.connection.update(t.strip().lower() for t in value.split(b","))
        self.request.headers.append((lname, value))

    def on_headers_complete(self) -> None:
        request = self.request
        request.method = self.parser.get_method()
        self.phase = _BODY
        self.head_bytes = 0
        self.deadline = self.plane.loop.time() + self.limits.body_timeout_s
        limit = self.plane.cfg.max_body_bytes
        for name, value in request.headers:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                self._fail_in_callback(_Reject(413, f"request body is larger than {limit} bytes", "body_too_large"))
            elif name == b"expect" and value.lower() == b"100-continue" and self.transport is not None:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.plane.cfg.max_body_bytes:
            self._fail_in_callback(_Reject(413, f"request body is larger than {self.plane.cfg.max_body_bytes} bytes",
                                           "body_too_large"))
        self.request.body.append(body)

    def on_message_complete(self) -> None:
        request = self.request
        request.keep_alive = self.parser.should_keep_alive()
        self.deadline = 0.0
        self.phase = _DONE
        if self.busy:
            self.queue.append(request)
            return
        self.busy = True
        assert self.transport is not None
        self.transport.pause_reading()
        self.plane.dispatch(self, request)

    # -- answers ------------------------------------------------------------------------
    def _fail_in_callback(self, reject: _Reject) -> None:
        self.reject = reject
        raise reject  # llhttp stops; data_received answers it

    def _refuse(self, reject: _Reject) -> None:
        """Answer ``reject`` and end the connection without losing the answer.

        Closing at once with unread bytes in the socket would send a reset that can destroy
        the answer before the client reads it; so the write side is shut and what the
        client still sends is read and dropped until it closes, or for ``_LINGER_S``."""
        errors = self.plane.router.client_errors
        errors[reject.counter] = errors.get(reject.counter, 0) + 1
        transport = self.transport
        if transport is None or self.closed or transport.is_closing() or self.draining:
            return
        self.write(json_reply(reject.status, {"error": reject.error}, (b"connection", b"close")), close=False)
        self.draining = True
        self.phase = _IDLE
        self.deadline = self.plane.loop.time() + _LINGER_S
        if transport.can_write_eof():
            transport.write_eof()
        else:
            self.closed = True
            transport.close()

    def write(self, reply: Reply, *, close: bool, cloud: str | None = None, head_only: bool = False,
              upstream_connection: set[bytes] | None = None, request_id: bytes | None = None) -> None:
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            return
        status, headers, body = reply
        drop = _RESPONSE_DROP | upstream_connection if upstream_connection else _RESPONSE_DROP
        parts = [_STATUS_LINES.get(status) or f"HTTP/1.1 {status} \r\n".encode()]
        for name, value in headers:
            if name.lower() not in drop:
                parts += (name, b": ", value, b"\r\n")
        if cloud is not None:
            parts += (CLOUD_HEADER_BYTES, b": ", cloud.encode(), b"\r\n")
        parts += (ROUTER_HEADER_BYTES, b": ", self.plane.router.name_bytes, b"\r\n")
        if request_id is not None:
            parts += (REQUEST_ID_HEADER, b": ", request_id, b"\r\n")
        parts += (b"content-length: ", str(len(body)).encode(), b"\r\n")
        if close:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        if not head_only:
            parts.append(body)
        transport.write(b"".join(parts))
        if close:
            self.closed = True
            transport.close()

    def answered(self, request: _Request) -> None:
        """The answer to ``request`` is written: read the next request, or close."""
        if self.closed:
            return
        if not request.keep_alive:
            self.closed = True
            assert self.transport is not None
            self.transport.close()
            return
        if self.queue:
            self.plane.dispatch(self, self.queue.pop(0))
            return
        self.busy = False
        if self.phase == _DONE:
            self.phase = _IDLE
            self.deadline = self.plane.loop.time() + self.limits.idle_timeout_s
        assert self.transport is not None
        self.transport.resume_reading()

    def expire(self) -> None:
        """The sweep found this connection past its deadline."""
        if self.draining:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        elif self.phase == _HEAD:
            self._refuse(_Reject(408, f"request headers not received within {self.limits.header_timeout_s} s",
                                 "header_timeout"))
        elif self.phase == _BODY:
            self._refuse(_Reject(408, f"request body not received within {self.limits.body_timeout_s} s",
                                 "body_timeout"))
        elif self.transport is not None:
            self.closed = True
            self.transport.close()


class DataPlane:
    """The listening socket, the connections, the admin adapter and the forwarder."""

    def __init__(self, router: Router, *, listen: tuple[str, int] | None = None) -> None:
        self.router = router
        self.cfg = router.cfg
        # (host, port); by default router.host and router.port. The Rust data plane's control
        # plane listens on a loopback port instead (router/rust.py).
        self.listen = listen
        stall_s = self.cfg.retries.per_try_timeout_s / 4
        self.monitor = LoopMonitor(shed_lag_s=self.cfg.limits.shed_lag_s, stall_s=stall_s)
        self.forwarder = Forwarder(router, self.monitor)
        self.admin = AdminApi(router)
        self.connections: set[ClientConnection] = set()
        self.inflight = 0
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self._server: asyncio.AbstractServer | None = None
        self._admin_server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        if router.rust_link is None:  # (with the Rust data plane, its own figures: rust.py)
            router.saturation = self.saturation  # the status report shows it

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.router.startup()
        self.monitor.start()
        worker = self.router.worker
        host, port = self.listen or (self.cfg.host, self.cfg.port)
        self._server = await self.loop.create_server(lambda: ClientConnection(self), host, port,
                                                     backlog=2048, reuse_address=True,
                                                     reuse_port=worker is not None)
        if worker is not None:  # the private port where the other workers read this one (workers.py)
            self._admin_server = await self.loop.create_server(lambda: ClientConnection(self), "127.0.0.1",
                                                               worker.admin_port, reuse_address=True)
        self._sweeper = self.loop.call_later(_SWEEP_S, self._sweep)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._admin_server is not None:
            self._admin_server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        self.monitor.stop()
        tasks = [c.task for c in self.connections if c.task is not None and not c.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.forwarder.close()
        await self.router.shutdown()

    def saturation(self) -> dict[str, Any]:
        return {"inflight": self.inflight, "max_concurrency": self.cfg.limits.max_concurrency,
                "loop_lag_ms": round(self.monitor.current_lag() * 1000, 3),
                "max_loop_lag_ms": round(self.monitor.max_lag_s * 1000, 3),
                "own_stall_timeouts": self.router.own_stall_timeouts}

    def _sweep(self) -> None:
        now = self.loop.time()
        for conn in [c for c in self.connections if c.deadline and c.deadline < now]:
            conn.expire()
        self.forwarder.prune()
        self._sweeper = self.loop.call_later(_SWEEP_S, self._sweep)

    # -- one request ---------------------------------------------------------------------
    def dispatch(self, conn: ClientConnection, request: _Request) -> None:
        path, _, query = request.url.partition(b"?")
        if path.startswith(b"/admin/") or path == b"/metrics":
            conn.task = self.loop.create_task(self._admin(conn, request, path, query))
            return
        if path == b"/v1/feedback":  # joined by the router itself (feedback.py), never forwarded
            conn.task = self.loop.create_task(self._feedback(conn, request))
            return
        if path in _OWN_PROBES:
            conn.write(self.router.probe(path.decode()), close=not request.keep_alive,
                       head_only=request.method == b"HEAD")
            conn.answered(request)
            return
        limits = self.cfg.limits
        errors = self.router.client_errors
        if self.inflight >= limits.max_concurrency:
            errors["shed_concurrency"] += 1
            self._shed(conn, request, f"the router is at its concurrency limit ({limits.max_concurrency} requests)")
            return
        if self.monitor.saturated():
            errors["shed_lag"] += 1
            self._shed(conn, request, f"the router is saturated (event loop {self.monitor.current_lag() * 1000:.0f} ms "
                                      "late)")
            return
        self.inflight += 1
        conn.task = self.loop.create_task(self._proxy(conn, request, path, query))

    def _shed(self, conn: ClientConnection, request: _Request, why: str) -> None:
        conn.write(json_reply(503, {"error": why, "hint": "retry after a second"}, (b"retry-after", b"1")),
                   close=False)
        conn.answered(request)

    def _upstream_headers(self, conn: ClientConnection, request: _Request) -> tuple[bytes, bytes]:
        """The headers to forward, and the ``x-mco-hop`` the request came with (b"": none)."""
        named = request.connection
        forwarded = b""
        via = b""
        parts: list[bytes] = []
        for name, value in request.headers:
            if name in _REQUEST_DROP or name in named:
                if name == b"x-forwarded-for":
                    forwarded = forwarded + b", " + value if forwarded else value
                elif name == HOP_HEADER_BYTES:
                    via = via + b", " + value if via else value
                continue
            parts += (name, b": ", value, b"\r\n")
        parts += (b"x-forwarded-for: ", forwarded + b", " + conn.peer if forwarded else conn.peer, b"\r\n")
        name = self.router.name_bytes
        parts += (HOP_HEADER_BYTES, b": ", via + b", " + name if via else name, b"\r\n")
        return b"".join(parts), via

    def _loop(self, via: bytes) -> bool:
        """Does ``x-mco-hop`` already name this router?"""
        return self.router.name_bytes in (h.strip() for h in via.split(b","))

    async def _proxy(self, conn: ClientConnection, request: _Request, path: bytes, query: bytes) -> None:
        router = self.router
        started = time.perf_counter()
        try:
            body = b"".join(request.body)
            headers, via = self._upstream_headers(conn, request)
            if via and self._loop(via):
                router.client_errors["hop_loop"] += 1
                answer = Answer(*json_reply(508, {"error": f"request loop: it already came through this router "
                                                          f"({router.name}); x-mco-hop: {via.decode('latin-1')}"}),
                                None)
            else:
                answer = await self.forwarder.forward(request.method, path, query, headers, body,
                                                      hopped=bool(via))
            elapsed = time.perf_counter() - started
            router.overall.observe(elapsed, len(answer.body))
            kept = router.kept
            request_id = kept.keep(answer.cloud, answer.status, elapsed, answer.body) \
                if kept is not None and path == b"/v1/predict" else None
            upstream_connection: set[bytes] | None = None
            for name, value in answer.headers:
                if name.lower() == b"connection":
                    upstream_connection = (upstream_connection or set()) | {
                        t.strip().lower() for t in value.split(b",")}
            conn.write(answer[:3], close=not request.keep_alive, cloud=answer.cloud,
                       head_only=request.method == b"HEAD", upstream_connection=upstream_connection,
                       request_id=request_id)
        except Exception as exc:
            conn.write(json_reply(502, {"error": f"the router failed: {type(exc).__name__}: {exc}"}), close=True)
        finally:
            self.inflight -= 1
        conn.answered(request)

    async def _feedback(self, conn: ClientConnection, request: _Request) -> None:
        reply = await handle_feedback(self.router, request.method, b"".join(request.body))
        conn.write(reply, close=not request.keep_alive)
        conn.answered(request)

    async def _admin(self, conn: ClientConnection, request: _Request, path: bytes, query: bytes) -> None:
        body = b"".join(request.body)
        scope = {"type": "http", "method": request.method.decode("latin-1"),
                 "path": unquote_to_bytes(path).decode("latin-1"), "raw_path": path, "query_string": query,
                 "headers": request.headers}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            reply = await self.admin.handle(scope, receive)
        except Exception as exc:
            reply = json_reply(500, {"error": f"the admin API failed: {type(exc).__name__}"})
        conn.write(reply, close=not request.keep_alive, head_only=request.method == b"HEAD")
        conn.answered(request)


# -- running it --------------------------------------------------------------------------
def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a router dependency; plain asyncio still works
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(cfg: RouterConfig, *, token: str | None, config_path: Path | None = None) -> None:
    """Serve until SIGINT/SIGTERM. With ``config_path``, SIGHUP re-reads the targets from it."""

    async def main() -> None:
        router = Router(cfg, token=token, config_path=config_path)
        router.handle_sighup = config_path is not None
        plane = DataPlane(router)
        await plane.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await plane.stop()

    with asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(main())


class DataPlaneThread:
    """The data plane on a background thread of this process (tests, the benchmark)."""

    def __init__(self, router: Router, *, listen: tuple[str, int] | None = None) -> None:
        self.router = router
        self.listen = listen
        self.plane: DataPlane | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float) -> None:
        self._thread = threading.Thread(target=self._run, name="mco-router", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise RuntimeError(f"the data plane did not start: {self._error}")

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self.plane = DataPlane(self.router, listen=self.listen)
            try:
                await self.plane.start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                raise
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await self.plane.stop()

        # a failed start is reported by start()
        with asyncio.Runner(loop_factory=_new_loop) as runner, contextlib.suppress(Exception):
            runner.run(main())

    def set_targets(self, targets: list[RouterTargetConfig]) -> None:
        assert self._loop is not None, "start() first"
        done = threading.Event()

        def apply() -> None:
            try:
                self.router.set_targets(targets)
            finally:
                done.set()

        self._loop.call_soon_threadsafe(apply)
        done.wait(5)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None
