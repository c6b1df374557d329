"""Active health checks: GET ``path`` on every target, on an interval with jitter.

A target goes down after ``unhealthy_threshold`` failures in a row and comes back after
``healthy_threshold`` successes in a row. After a first failure (or a first success
while down) the next check comes after ``fast_recheck_s`` instead of the full interval,
so a dead target is noticed in about ``fast_recheck_s * (unhealthy_threshold - 1)``
after the first failed check. Targets are assumed up until checked, and the first
check runs at once.

Only transitions reach the balancer (``StatusSink.set_status``), each with an event.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.router.events import EventLog
from orchestrator.router.health import StatusSink

if TYPE_CHECKING:
    import httpx

    from orchestrator.config import RouterHealthConfig

__all__ = ["ActiveChecker"]


@dataclass
class _CheckState:
    url: str
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
        self._client: httpx.AsyncClient | None = None
        self._rng = random.Random()

    def state(self, name: str) -> _CheckState | None:
        return self._states.get(name)

    def failing(self, name: str) -> bool:
        """Did the last active check of ``name`` fail (or is it down)? False when not checked."""
        state = self._states.get(name)
        return state is not None and (not state.up or state.fail_run > 0)

    async def start(self, targets: dict[str, str]) -> None:
        import httpx

        # Health checks are beside the hot path, so they use the project's client. Each check
        # opens a fresh connection (like HAProxy's): a kept-alive one can outlive the server it
        # was made to (a node restarted behind the same port answered a stale connection with
        # 403 for minutes while new connections got 200).
        self._client = httpx.AsyncClient(timeout=self.cfg.timeout_s, follow_redirects=False,
                                         limits=httpx.Limits(max_keepalive_connections=0))
        self.update(targets)

    def update(self, targets: dict[str, str]) -> None:
        """Check exactly ``targets`` (name -> base URL) from now on."""
        for name in list(self._states):
            if name not in targets or targets[name] != self._states[name].url:
                state = self._states.pop(name)
                if state.task is not None:
                    state.task.cancel()
        for name, url in targets.items():
            if name not in self._states:
                state = _CheckState(url=url)
                self._states[name] = state
                state.task = asyncio.get_running_loop().create_task(self._run(name, state), name=f"check-{name}")

    async def stop(self) -> None:
        tasks = [s.task for s in self._states.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._states.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _probe(self, state: _CheckState) -> bool:
        import httpx

        assert self._client is not None
        try:
            resp = await self._client.get(state.url + self.cfg.path, timeout=self.cfg.timeout_s)
            # guard against a hang of the whole exchange, not only of each read
        except httpx.HTTPError as exc:
            state.last_error = f"{type(exc).__name__}"
            return False
        if resp.status_code != 200:
            state.last_error = f"HTTP {resp.status_code}"
            return False
        state.last_error = None
        return True

    async def _check_once(self, state: _CheckState) -> bool:
        try:
            return await asyncio.wait_for(self._probe(state), self.cfg.timeout_s * 2)
        except asyncio.TimeoutError:
            state.last_error = "timeout"
            return False
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a checker that dies would leave a target down forever
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
