"""The router's own saturation: how late its event loop runs.

A timer ticks every ``TICK_S``; how late it fires is the loop's lag (the queue time of
everything else that is ready to run). Two decisions read it:

* **shedding**: once every tick for ``SUSTAIN_S`` has been over ``shed_lag_s`` late
  *while the router itself kept its CPU busy* (``BUSY_SHARE`` of the wall time), the
  router is saturated, and new requests get 503 + ``Retry-After`` at once instead of
  waiting in a queue it cannot drain, until a tick is on time again. One stall (a
  garbage collection) is not saturation, and neither is a machine so busy that the
  router does not get the CPU (its own work is not what makes it late, and refusing
  work would not make it faster): what queued is served;
* **blame**: a try that timed out while the loop stalled for at least ``stall_s`` (a
  quarter of the per-try timeout) was the router's fault, not the cloud's: it is
  counted (``own_stall_timeouts``) but not fed to outlier detection.

The concurrency limit, the third measure, is kept by the server (``inflight``).
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["LoopMonitor"]

TICK_S = 0.05
SUSTAIN_S = 0.5
BUSY_SHARE = 0.25  # (a busy process on this 2-core machine under load 20 got about a third of a core)


class LoopMonitor:
    def __init__(self, *, shed_lag_s: float, stall_s: float) -> None:
        self.shed_lag_s = shed_lag_s
        self.stall_s = stall_s
        self.lag_s = 0.0             # lateness of the last tick
        self.max_lag_s = 0.0         # since start, for the status report
        self.stall_ended_at = float("-inf")  # loop time when the last stall of >= stall_s ended
        self.late_since: float | None = None  # loop time of the first of the current run of late ticks
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._due = self._loop.time() + TICK_S
        self._cpu = time.process_time()
        self._wall = self._loop.time()
        self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        lag = now - self._due
        self.lag_s = lag
        self.max_lag_s = max(self.max_lag_s, lag)
        if lag >= self.stall_s:
            self.stall_ended_at = now
        cpu = time.process_time()
        busy = (cpu - self._cpu) / max(now - self._wall, 1e-6)
        self._cpu, self._wall = cpu, now
        if lag > self.shed_lag_s and busy >= BUSY_SHARE:
            if self.late_since is None:
                self.late_since = now - lag
        else:
            self.late_since = None
        self._due = now + TICK_S
        self._handle = self._loop.call_at(self._due, self._tick)

    def current_lag(self) -> float:
        """The last tick's lateness, or the due tick's if it is later still (a stall in progress)."""
        if self._loop is None:
            return 0.0
        return max(self.lag_s, self._loop.time() - self._due)

    def saturated(self) -> bool:
        assert self._loop is not None
        return self.late_since is not None and self._loop.time() - self.late_since >= SUSTAIN_S

    def stalled_since(self, started: float) -> bool:
        """Did the loop stall (for ``stall_s`` or more) after loop time ``started``?"""
        return self.stall_ended_at >= started or self.current_lag() >= self.stall_s
