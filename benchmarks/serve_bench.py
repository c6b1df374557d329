"""Model server throughput and latency on loopback, next to the same predictions in-process.

    .venv/bin/python benchmarks/serve_bench.py [--seconds 5] [--rates 200,500]

Starts `mco serve` on a free port, drives /v1/predict with an aiohttp load generator in
this process (single row and batch of 64), at fixed open-loop rates and at saturation
(closed loop, 16 connections), and times OnnxModel.predict on the same inputs. Prints
medians and the ratio server latency / in-process latency: the server's own overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.model.export import OnnxModel
from orchestrator.model.train import TrainSpec, train_bundle
from orchestrator.net import free_port, wait_for_port


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def fixed_rate(url: str, body: bytes, rate: int, seconds: float) -> tuple[list[float], int]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    conn = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=conn) as session:
        async def one() -> None:
            nonlocal errors
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers={"content-type": "application/json"}) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                        return
            except aiohttp.ClientError:
                errors += 1
                return
            latencies.append(time.perf_counter() - t0)

        tasks = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):  # open loop: requests leave on schedule whatever the server does
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return latencies, errors


async def saturate(url: str, body: bytes, concurrency: int, seconds: float) -> tuple[list[float], float]:
    import aiohttp

    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker() -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                async with session.post(url, data=body, headers={"content-type": "application/json"}) as resp:
                    await resp.read()
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        elapsed = time.perf_counter() - t0
    return latencies, len(latencies) / elapsed


def in_process(model: OnnxModel, X: np.ndarray, repeats: int = 2000) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.predict(X)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", default="200,500")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mco-serve-bench-"))
    bundle = train_bundle(TrainSpec(), work / "bundle")
    X = np.loadtxt(bundle.path / "data/holdout.csv", delimiter=",", skiprows=1, dtype=np.float32)[:, :-1]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "orchestrator.cli.main", "serve", str(bundle.path),
                               "--port", str(port), "--max-body-bytes", str(4 << 20)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, timeout=30, what="model server")
        url = f"http://127.0.0.1:{port}/v1/predict"
        model = OnnxModel(bundle.model_path.read_bytes())
        rows = []
        for label, batch in (("1 row", X[:1]), ("64 rows", X[:64])):
            body = json.dumps({"instances": batch.tolist()}).encode()
            local = in_process(model, batch)
            local_p50 = statistics.median(local)
            for rate in [int(r) for r in args.rates.split(",")]:
                lat, errors = asyncio.run(fixed_rate(url, body, rate, args.seconds))
                rows.append((label, f"{rate}/s fixed", rate, pct(lat, 50), pct(lat, 99), errors, local_p50))
            lat, rps = asyncio.run(saturate(url, body, args.concurrency, args.seconds))
            rows.append((label, f"saturation c={args.concurrency}", rps, pct(lat, 50), pct(lat, 99), 0, local_p50))
        print(f"{'payload':8} {'load':18} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
              f"{'in-proc p50 ms':>15} {'p50 ratio':>10}")
        for label, load, rps, p50, p99, errors, local_p50 in rows:
            print(f"{label:8} {load:18} {rps:8.0f} {p50 * 1e3:8.2f} {p99 * 1e3:8.2f} {errors:6d} "
                  f"{local_p50 * 1e3:15.3f} {p50 / local_p50:9.1f}x")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
