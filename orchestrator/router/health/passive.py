"""Passive outlier detection: eject a target that real requests show to be failing.

Consecutive local-origin failures (connect refused, reset, per-try timeout) and
consecutive upstream 5xx are counted separately; a success resets both. Reaching a
threshold ejects the target for ``base_ejection_s * n`` (n = how many times it has
been ejected, capped at ``max_ejection_s``), so a flapping target stays out longer each
time. At most ``max_ejection_percent`` of the targets may be ejected at once (always at
least one). The ejection count decays: a target that has stayed in for
``max_ejection_s`` starts again from one.

A query of death (a request every cloud fails on with a 5xx) must not take healthy clouds
out one after the other: with ``confirm_5xx`` set (the router sets it to "do the active
checks of this target fail?"), a run of 5xx ejects a target only when its active checks
agree. Local-origin failures eject on their own.

``success``/``failure`` run on the hot path: a dict lookup and an integer update,
except when a threshold is crossed.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.router.events import EventLog
from orchestrator.router.health import StatusSink

if TYPE_CHECKING:
    from orchestrator.config import RouterOutlierConfig

__all__ = ["LOCAL_ORIGIN", "OutlierDetector"]

LOCAL_ORIGIN = frozenset({"connect", "timeout", "reset"})


@dataclass
class _Outlier:
    local_run: int = 0
    http_run: int = 0
    ejections: int = 0
    ejected_until: float = 0.0  # unix time; 0 when in service
    readmitted_at: float = 0.0
    timer: asyncio.TimerHandle | None = None


class OutlierDetector:
    def __init__(self, cfg: RouterOutlierConfig, sink: StatusSink, events: EventLog) -> None:
        self.cfg = cfg
        self.sink = sink
        self.events = events
        self._state: dict[str, _Outlier] = {}
        # None: a 5xx run ejects on its own (no active checks to ask)
        self.confirm_5xx: Callable[[str], bool] | None = None

    def update(self, names: list[str]) -> None:
        for name in list(self._state):
            if name not in names:
                state = self._state.pop(name)
                if state.timer is not None:
                    state.timer.cancel()
        for name in names:
            self._state.setdefault(name, _Outlier())

    def state(self, name: str) -> _Outlier | None:
        return self._state.get(name)

    def stop(self) -> None:
        for state in self._state.values():
            if state.timer is not None:
                state.timer.cancel()

    # -- hot path -------------------------------------------------------------------
    def success(self, name: str) -> None:
        state = self._state.get(name)
        if state is not None and (state.local_run or state.http_run):
            state.local_run = state.http_run = 0

    def failure(self, name: str, kind: str) -> None:
        state = self._state.get(name)
        if state is None or state.ejected_until:
            return
        if kind in LOCAL_ORIGIN:
            state.local_run += 1
            if state.local_run >= self.cfg.consecutive_local_failures:
                self._eject(name, state, f"{state.local_run} consecutive local-origin failures (last: {kind})")
        else:
            state.http_run += 1
            if state.http_run >= self.cfg.consecutive_5xx:
                if self.confirm_5xx is None:
                    self._eject(name, state, f"{state.http_run} consecutive upstream 5xx")
                elif self.confirm_5xx(name):
                    self._eject(name, state, f"{state.http_run} consecutive upstream 5xx, and its health checks fail")

    # -- transitions ----------------------------------------------------------------
    def _eject(self, name: str, state: _Outlier, reason: str) -> None:
        ejected = sum(1 for s in self._state.values() if s.ejected_until)
        allowed = max(1, math.floor(len(self._state) * self.cfg.max_ejection_percent / 100))
        if ejected >= allowed:
            return  # the cap protects the last targets from being ejected on a bad day
        now = time.time()
        if state.readmitted_at and now - state.readmitted_at > self.cfg.max_ejection_s:
            state.ejections = 0
        state.ejections += 1
        duration = min(self.cfg.base_ejection_s * state.ejections, self.cfg.max_ejection_s)
        state.ejected_until = now + duration
        state.local_run = state.http_run = 0
        self.events.emit("ejection", name, reason=reason, ejections=state.ejections, duration_s=duration)
        self.sink.set_status(name, False)
        state.timer = asyncio.get_running_loop().call_later(duration, self._readmit, name)

    def _readmit(self, name: str) -> None:
        state = self._state.get(name)
        if state is None or not state.ejected_until:
            return
        state.ejected_until = 0.0
        state.readmitted_at = time.time()
        state.timer = None
        self.events.emit("readmission", name, ejections=state.ejections)
        self.sink.set_status(name, True)
