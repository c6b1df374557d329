"""The retry budget and backoff.

Retries (and hedges) may add at most ``ratio`` of the request load, measured over a
sliding window, plus a floor of ``min_per_s`` so a quiet router can still retry. When a
cloud dies under load the first requests to it fail before passive detection ejects it;
the budget is what lets each of them be retried elsewhere without turning an outage
into a retry storm.
"""

from __future__ import annotations

import random
import time

__all__ = ["RetryBudget", "backoff"]


class RetryBudget:
    def __init__(self, *, ratio: float, min_per_s: float, window_s: int = 10) -> None:
        self.ratio = ratio
        self.min_per_s = min_per_s
        self.window_s = window_s
        self._requests = [0] * window_s
        self._retries = [0] * window_s
        self._second = int(time.monotonic())
        self.denied = 0

    def _roll(self) -> int:
        now = int(time.monotonic())
        if now != self._second:
            gap = now - self._second
            for k in range(1, min(gap, self.window_s) + 1):
                slot = (self._second + k) % self.window_s
                self._requests[slot] = 0
                self._retries[slot] = 0
            self._second = now
        return now % self.window_s

    def request(self) -> None:
        """Count one client request (hot path)."""
        self._requests[self._roll()] += 1

    def try_acquire(self) -> bool:
        """May one more retry or hedge go out now?"""
        slot = self._roll()
        allowed = self.ratio * sum(self._requests) + self.min_per_s * self.window_s
        if sum(self._retries) < allowed:
            self._retries[slot] += 1
            return True
        self.denied += 1
        return False

    def snapshot(self) -> dict[str, float]:
        self._roll()
        return {"ratio": self.ratio, "min_per_s": self.min_per_s, "window_s": self.window_s,
                "requests_in_window": sum(self._requests), "retries_in_window": sum(self._retries),
                "denied_total": self.denied}


# Callers that bring no generator share this one.
_RNG = random.Random()


def backoff(attempt: int, *, base_s: float, max_s: float, rng: random.Random = _RNG) -> float:
    """Full-jitter exponential backoff before retry number ``attempt`` (1-based)."""
    cap = min(max_s, base_s * (2 ** (attempt - 1)))
    return rng.uniform(0, cap)
