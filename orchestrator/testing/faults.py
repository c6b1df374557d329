"""A fault-injecting HTTP/1.1 proxy that sits in front of a real model server (loopback only).

For tests and the router benchmark: it breaks a target in the ways clouds break.

It understands just enough HTTP (Content-Length bodies, keep-alive) to break things at
the right moment:

    pass       forward unchanged
    refuse     stop listening and drop every open connection (like a dead process)
    hang       accept, read the request, never answer
    http503    answer every request, /readyz included, with 503
    slow       forward, but hold each answer for ``delay`` seconds
    reset_mid  forward; for paths other than /readyz send the headers and half the
               body, then reset the connection (RST), so health checks stay green

``FaultProxy`` runs it in a child process (``python -m orchestrator.testing.faults``)
so it never competes for the test process's GIL with the load generator; ``set_mode``
writes a command line to the child's stdin and waits for its acknowledgement.
``last_request_head()`` returns what the upstream was last sent, for header tests.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import struct
import subprocess
import sys
import threading

from orchestrator.net import free_port

__all__ = ["MODES", "FaultProxy"]


MODES = ("pass", "refuse", "hang", "http503", "slow", "reset_mid")
_MAX_HEAD = 64 * 1024


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


class _ProxyCore:
    def __init__(self, upstream_port: int, *, port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.mode = "pass"
        self.delay = 2.0
        self.last_request_head: bytes = b""
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"fault-proxy-{self.port}", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def start(self) -> _ProxyCore:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._close(drop=True))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def set_mode(self, mode: str, *, delay: float | None = None) -> None:
        assert mode in MODES, mode
        if delay is not None:
            self.delay = delay
        previous, self.mode = self.mode, mode
        if mode == "refuse" and previous != "refuse":
            self._call(self._close(drop=True))
        elif mode != "refuse" and previous == "refuse":
            self._call(self._listen())

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _close(self, *, drop: bool) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if drop:
            for w in list(self._writers):
                _reset(w)
            self._writers.clear()
            for task in list(self._tasks):
                task.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        up: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                body = await reader.readexactly(_content_length(head))
                self.requests += 1
                path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
                mode = self.mode
                if mode == "hang":
                    await asyncio.sleep(3600)
                    return
                if mode == "http503":
                    msg = b'{"error": "injected 503"}'
                    writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                                 b"content-length: " + str(len(msg)).encode() + b"\r\n\r\n" + msg)
                    await writer.drain()
                    continue
                if up is None:
                    up = await asyncio.open_connection("127.0.0.1", self.upstream_port)
                self.last_request_head = head
                up[1].write(head + body)
                await up[1].drain()
                resp_head = await up[0].readuntil(b"\r\n\r\n")
                resp_body = await up[0].readexactly(_content_length(resp_head))
                if self.mode == "slow":
                    await asyncio.sleep(self.delay)
                if self.mode == "reset_mid" and not path.startswith(b"/readyz"):
                    writer.write(resp_head + resp_body[: len(resp_body) // 2])
                    await writer.drain()
                    _reset(writer)
                    return
                if self.mode == "refuse":
                    _reset(writer)
                    return
                writer.write(resp_head + resp_body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            return
        except asyncio.CancelledError:
            return  # the proxy is stopping: end quietly (a hung handler is cancelled here)
        finally:
            self._writers.discard(writer)
            if up is not None:
                up[1].close()
            if not writer.is_closing():
                writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN (SO_LINGER 0), like a crashed peer."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class FaultProxy:
    """The proxy in a child process, controlled over its stdin/stdout."""

    def __init__(self, upstream_port: int, *, port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.mode = "pass"
        self._proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.testing.faults", str(self.upstream_port), str(self.port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self._read() == "ready"
        return self

    def _read(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the fault proxy exited")
        return line.strip()

    def _command(self, text: str) -> str:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(text + "\n")
        self._proc.stdin.flush()
        return self._read()

    def set_mode(self, mode: str, *, delay: float | None = None) -> None:
        assert mode in MODES, mode
        self.mode = mode
        assert self._command(f"mode {mode} {delay if delay is not None else ''}".strip()) == "ok"

    def last_request_head(self) -> bytes:
        return base64.b64decode(self._command("head"))

    def stop(self) -> None:
        if self._proc is None:
            return
        try:
            self._command("quit")
        except (RuntimeError, BrokenPipeError, OSError):
            pass
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        self._proc = None


def _child(upstream_port: int, port: int) -> None:
    core = _ProxyCore(upstream_port, port=port).start()
    print("ready", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "mode":
            core.set_mode(parts[1], delay=float(parts[2]) if len(parts) > 2 else None)
            print("ok", flush=True)
        elif parts[0] == "head":
            print(base64.b64encode(core.last_request_head).decode(), flush=True)
        elif parts[0] == "quit":
            print("bye", flush=True)
            break
    core.stop()


if __name__ == "__main__":
    _child(int(sys.argv[1]), int(sys.argv[2]))
