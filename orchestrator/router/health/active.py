"""Active health checks: GET ``path`` on every target, on an interval with jitter.

A target goes down after ``unhealthy_threshold`` failures in a row and comes back after
``healthy_threshold`` successes in a row. After a first failure (or a first success
while down) the next check comes after ``fast_recheck_s`` instead of the full interval,
so a dead target is noticed in about ``fast_recheck_s * (unhealthy_threshold - 1)``
after the first failed check. Targets are assumed up until checked, and the first
check runs at once.

Only transitions reach the balancer (``StatusSink.set_status``), each with an event.

A check is one ``GET`` on a fresh connection (like HAProxy's): a kept-alive one can
outlive the server it was made to (a node restarted behind the same port answered a
stale connection with 403 for minutes while new connections got 200). It is written and
parsed with asyncio streams and httptools: a general-purpose client cost about 1 ms of
CPU per check, a tenth of the router's whole budget at 300 requests/s.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httptools

from orchestrator.router.events import EventLog
from orchestrator.router.health import StatusSink

if TYPE_CHECKING:
    from orchestrator.config import RouterHealthConfig

__all__ = ["ActiveChecker"]


@dataclass
class _CheckState:
    url: str
    path: str | None = None  # the target's own check path (health_path); None: cfg.path
    up: bool = True
    ok_run: int = 0
    fail_run: int = 0
    checks: int = 0
    last_error: str | None = None
    task: asyncio.Task[None] | None = None


class ActiveChecker:
    def __init__(self, cfg: RouterHealthConfig, sink: StatusSink, events: EventLog) -> None:
        self.cfg = cfg
        self.sink = sink
        self.events = events
        self._states: dict[str, _CheckState] = {}
        self._rng = random.Random()
        self._tls: ssl.SSLContext | None = None

    def state(self, name: str) -> _CheckState | None:
        return self._states.get(name)

    def failing(self, name: str) -> bool:
        """Did the last active check of ``name`` fail (or is it down)? False when not checked."""
        state = self._states.get(name)
        return state is not None and (not state.up or state.fail_run > 0)

    async def start(self, targets: dict[str, str], paths: dict[str, str] | None = None) -> None:
        self.update(targets, paths)

    def update(self, targets: dict[str, str], paths: dict[str, str] | None = None) -> None:
        """Check exactly ``targets`` (name -> base URL) from now on, each on ``paths[name]`` when
        given (another cloud's router: ``/readyz/local``), else on the configured path."""
        paths = paths or {}
        for name in list(self._states):
            state = self._states[name]
            if name not in targets or targets[name] != state.url or paths.get(name) != state.path:
                self._states.pop(name)
                if state.task is not None:
                    state.task.cancel()
        for name, url in targets.items():
            if name not in self._states:
                state = _CheckState(url=url, path=paths.get(name))
                self._states[name] = state
                state.task = asyncio.get_running_loop().create_task(self._run(name, state), name=f"check-{name}")

    async def stop(self) -> None:
        tasks = [s.task for s in self._states.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._states.clear()

    async def _probe(self, state: _CheckState) -> bool:
        parts = urlsplit(state.url)
        tls = None
        if parts.scheme == "https":
            tls = self._tls = self._tls or ssl.create_default_context()
        port = parts.port or (443 if tls else 80)
        try:
            reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=tls)
        except OSError as exc:
            state.last_error = f"connect: {exc.strerror or type(exc).__name__}"
            return False
        try:
            path = parts.path.rstrip("/") + (state.path or self.cfg.path)
            writer.write(f"GET {path} HTTP/1.1\r\nhost: {parts.netloc}\r\nconnection: close\r\n"
                         f"user-agent: mco-router-check\r\n\r\n".encode())
            status = await _read_status(reader)
        except (OSError, httptools.HttpParserError) as exc:
            state.last_error = f"read: {type(exc).__name__}"
            return False
        finally:
            writer.close()
        if status != 200:
            state.last_error = f"HTTP {status}" if status else "no answer"
            return False
        state.last_error = None
        return True

    async def _check_once(self, state: _CheckState) -> bool:
        try:
            return await asyncio.wait_for(self._probe(state), self.cfg.timeout_s)
        except TimeoutError:
            state.last_error = "timeout"
            return False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            state.last_error = type(exc).__name__
            return False

    async def _run(self, name: str, state: _CheckState) -> None:
        cfg = self.cfg
        delay = 0.0
        while True:
            if delay:
                await asyncio.sleep(delay)
            ok = await self._check_once(state)
            state.checks += 1
            if ok:
                state.ok_run, state.fail_run = state.ok_run + 1, 0
            else:
                state.ok_run, state.fail_run = 0, state.fail_run + 1
            if state.up and state.fail_run >= cfg.unhealthy_threshold:
                state.up = False
                self.events.emit("health_down", name, reason=state.last_error, failures=state.fail_run)
                self.sink.set_status(name, False)
            elif not state.up and state.ok_run >= cfg.healthy_threshold:
                state.up = True
                self.events.emit("health_up", name, successes=state.ok_run)
                self.sink.set_status(name, True)
            confirming = (state.up and state.fail_run > 0) or (not state.up and state.ok_run > 0)
            delay = cfg.fast_recheck_s if confirming else cfg.interval_s + self._rng.uniform(0, cfg.jitter_s)


class _Status:
    """llhttp callbacks that keep only the status code of an answer."""

    def __init__(self) -> None:
        self.status = 0
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()


async def _read_status(reader: asyncio.StreamReader) -> int:
    answer = _Status()
    while not answer.status:
        data = await reader.read(4096)
        if not data:
            break
        answer.parser.feed_data(data)
    return answer.status
