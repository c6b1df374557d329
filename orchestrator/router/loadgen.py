"""An open-loop load generator: send at a fixed rate whatever the answers do.

Used by the router tests, the benchmark and the drills. Open loop matters: a closed
loop (send, wait, send) slows down when the server does and hides exactly the stalls a
failover drill is looking for. aiohttp is used because httpx's async client was seen
to stall at a few hundred requests per second (see the README's router benchmark).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LoadResult", "Sample", "predict_body", "run_load"]


@dataclass(frozen=True)
class Sample:
    sent: float        # seconds since the start of the run
    latency: float     # seconds
    status: int        # 0 when the request failed without an HTTP answer
    cloud: str | None  # the x-mco-cloud response header
    error: str | None = None


@dataclass
class LoadResult:
    rate: float
    duration: float
    samples: list[Sample] = field(default_factory=list)
    started_at: float = 0.0  # unix time of t=0

    @property
    def errors(self) -> list[Sample]:
        return [s for s in self.samples if s.status != 200]

    def slower_than(self, seconds: float) -> int:
        return sum(1 for s in self.samples if s.latency > seconds)

    def percentile_ms(self, q: float, *, ok_only: bool = True) -> float | None:
        values = sorted(s.latency for s in self.samples if (s.status == 200 or not ok_only))
        if not values:
            return None
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    def by_cloud(self) -> dict[str | None, int]:
        out: dict[str | None, int] = {}
        for s in self.samples:
            out[s.cloud] = out.get(s.cloud, 0) + 1
        return out

    def moved_after(self, t0: float, away_from: str, *, window: int = 20) -> float | None:
        """Seconds after ``t0`` from which ``window`` answers in a row came from elsewhere."""
        after = sorted((s for s in self.samples if s.sent >= t0), key=lambda s: s.sent)
        run = 0
        for i, s in enumerate(after):
            if s.status == 200 and s.cloud is not None and s.cloud != away_from:
                run += 1
                if run >= window:
                    return max(0.0, after[i - window + 1].sent + after[i - window + 1].latency - t0)
            else:
                run = 0
        return None

    def summary(self) -> dict[str, Any]:
        return {"rate": self.rate, "duration_s": self.duration, "requests": len(self.samples),
                "errors": len(self.errors), "slower_than_1s": self.slower_than(1.0),
                "p50_ms": self.percentile_ms(0.5), "p99_ms": self.percentile_ms(0.99),
                "max_ms": max((s.latency for s in self.samples), default=0) * 1000, "by_cloud": self.by_cloud()}


def predict_body(n_features: int = 64, rows: int = 1) -> bytes:
    return json.dumps({"instances": [[float(i % 16) for i in range(n_features)]] * rows}).encode()


async def run_load(url: str, *, rate: float, duration: float, body: bytes | None = None,
                   timeout: float = 10.0, events: dict[float, Callable[[], Any]] | None = None,
                   max_connections: int = 512) -> LoadResult:
    """POST ``body`` to ``url`` ``rate`` times a second for ``duration`` seconds.

    ``events`` maps a time offset to a callable run then (e.g. ``kill -9`` the primary),
    so a fault lands at a known moment of the run.
    """
    import aiohttp

    body = body if body is not None else predict_body()
    result = LoadResult(rate=rate, duration=duration)
    headers = {"content-type": "application/json"}
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    connector = aiohttp.TCPConnector(limit=max_connections)
    pending = dict(sorted((events or {}).items()))

    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        result.started_at = time.time()

        async def one(sent: float) -> None:
            t0 = loop.time()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    result.samples.append(Sample(sent, loop.time() - t0, resp.status, resp.headers.get("x-mco-cloud")))
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                result.samples.append(Sample(sent, loop.time() - t0, 0, None, type(exc).__name__))

        tasks = []
        total = int(rate * duration)
        for i in range(total):
            at = i / rate
            while pending and next(iter(pending)) <= at:
                offset = next(iter(pending))
                fn = pending.pop(offset)
                fn()
            delay = start + at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(at)))
        for fn in pending.values():
            fn()
        await asyncio.gather(*tasks)
    return result
