"""Drill load generators side by side: aiohttp (what drills use) against httpx's async client.

    .venv/bin/python benchmarks/drill_traffic_bench.py [--rate 300] [--seconds 5] [--rounds 3]

Both send the same open-loop schedule (``--rate`` requests/s) through a real mco router to
three real model servers on loopback, and, in each round, the primary server is killed
(``kill -9``) halfway and restarted, as in a cloud-outage drill. Per generator it prints the
medians over the rounds of: requests actually sent vs scheduled, the worst lag of the send
schedule (how late a request left compared with its slot: a stalled event loop shows here
first), client p50/p99 latency, requests slower than 1 s, and client errors; then the
httpx / aiohttp ratios. A drill's RTO and error counts are only as true as this schedule.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.router.headers import CLOUD_HEADER
from orchestrator.testing.traffic import RequestRecord, TrafficConfig, TrafficGenerator, predict_body


class HttpxGenerator(TrafficGenerator):
    """The same open loop as ``TrafficGenerator``, with httpx.AsyncClient in place of aiohttp."""

    async def run(self) -> list[RequestRecord]:
        import httpx

        cfg = self.config
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        limits = httpx.Limits(max_connections=cfg.max_in_flight, max_keepalive_connections=cfg.max_in_flight)
        in_flight: set[asyncio.Task[None]] = set()
        interval = 1.0 / cfg.rate
        async with httpx.AsyncClient(limits=limits, timeout=cfg.timeout,
                                     headers={"content-type": "application/json"}) as client:
            self.started_at = time.time()
            t0 = time.perf_counter()
            if self._ready is not None:
                self._ready.set()
            n = 0
            while not self._stop.is_set():
                delay = t0 + n * interval - time.perf_counter()
                if delay > 0:
                    try:
                        await asyncio.wait_for(self._stop.wait(), delay)
                        break
                    except TimeoutError:
                        pass
                sent = self.started_at + (time.perf_counter() - t0)
                task = asyncio.create_task(self._one_httpx(client, sent))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                n += 1
            self.stopped_at = time.time()
            if in_flight:
                await asyncio.wait(in_flight, timeout=cfg.timeout + 1)
        return self.records

    async def _one_httpx(self, client: Any, sent: float) -> None:
        import httpx

        started = time.perf_counter()
        status, cloud, error = 0, None, None
        try:
            resp = await client.post(self.config.url, content=self.config.body)
            status, cloud = resp.status_code, resp.headers.get(CLOUD_HEADER)
            if status >= 400:
                error = f"HTTP {status}"
        except httpx.TimeoutException:
            error = "timeout"
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        self.records.append(RequestRecord(sent, time.perf_counter() - started, status, cloud, error))


def one_round(make: Callable[[TrafficConfig], TrafficGenerator], url: str, rate: float, seconds: float,
              fault: Callable[[], None]) -> dict[str, float]:
    gen = make(TrafficConfig(url=url, rate=rate, body=predict_body(64)))
    gen.start()
    timer = threading.Timer(seconds / 2, fault)
    timer.start()
    time.sleep(seconds)
    records = gen.stop()
    timer.join()
    assert gen.started_at is not None
    slots = sorted(r.sent for r in records)
    lag = max((s - (gen.started_at + i / rate) for i, s in enumerate(slots)), default=0.0)
    ok = sorted(r.latency for r in records if r.ok)
    return {
        "sent_share": len(records) / (rate * seconds),
        "max_schedule_lag_ms": lag * 1000,
        "p50_ms": ok[len(ok) // 2] * 1000 if ok else float("nan"),
        "p99_ms": ok[int(len(ok) * 0.99)] * 1000 if ok else float("nan"),
        "slower_than_1s": float(sum(1 for r in records if r.latency > 1.0)),
        "client_errors": float(sum(1 for r in records if not r.ok)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from orchestrator.config import RouterConfig, RouterTargetConfig
    from orchestrator.drills.environments import reference_bundle
    from orchestrator.local.runtime import LocalRuntime
    from orchestrator.router import RouterProcess

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bundle, _ = reference_bundle(root / "model")
        with LocalRuntime(root / "rt") as rt:
            targets = rt.deploy(bundle)
            cfg = RouterConfig(port=0, targets=[RouterTargetConfig(name=t.cloud, url=t.url, priority=t.priority)
                                                for t in targets])
            with RouterProcess(cfg, token=secrets.token_urlsafe(16), state_dir=root / "router") as router:
                time.sleep(2.5)  # let active checks see every target healthy
                url = f"{router.url}/v1/predict"

                def fault() -> None:
                    rt.kill("aws")
                    threading.Timer(1.0, lambda: rt.repair("aws")).start()

                results: dict[str, list[dict[str, float]]] = {"aiohttp": [], "httpx": []}
                for _ in range(args.rounds):  # interleaved, so both see the same machine load
                    for name, make in (("aiohttp", TrafficGenerator), ("httpx", HttpxGenerator)):
                        results[name].append(one_round(make, url, args.rate, args.seconds, fault))
                        time.sleep(7.0)  # aws back and readmitted before the next round
    keys = list(results["aiohttp"][0])
    med = {name: {k: statistics.median(r[k] for r in rounds) for k in keys} for name, rounds in results.items()}
    print(f"open loop at {args.rate:g} requests/s for {args.seconds:g} s, kill -9 of the primary halfway; "
          f"medians of {args.rounds} rounds")
    print(f"{'metric':<22}{'aiohttp':>12}{'httpx':>12}{'httpx/aiohttp':>16}")
    for k in keys:
        a, h = med["aiohttp"][k], med["httpx"][k]
        ratio = h / a if a else float("inf") if h else 1.0
        print(f"{k:<22}{a:>12.2f}{h:>12.2f}{ratio:>16.2f}")
    print(json.dumps({"medians": med}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
