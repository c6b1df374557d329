"""Model server throughput and latency on loopback, /v1 beside /v2, and KServe's server as a peer.

    .venv/bin/python benchmarks/serve_bench.py [--seconds 4] [--rates 200,500] [--rounds 3] [--no-kserve]

Starts `mco serve` on a free port and, when the `kserve` package is installed, KServe's own
Python model server on the same ONNX model with the same onnxruntime settings
(benchmarks/kserve_peer.py), once with its defaults and once with its logging off. Drives
each with an aiohttp load generator in this process (single row and batch of 64), at fixed
open-loop rates and at saturation (closed loop, 16 connections): mco's /v1/predict, mco's
/v2/models/{name}/infer, and KServe's /v2/models/{name}/infer with the same V2 body. The
servers take turns, in interleaved rounds; the table has each row's medians over the rounds,
the server's CPU per request (from /proc), and the ratios: mco /v2 over mco /v1, and mco /v2
over each KServe (throughput, higher is better for mco). OnnxModel.predict is timed in-process
on the same inputs: the cost of HTTP + JSON around the model is the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def v2_body(batch: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "X", "shape": list(batch.shape), "datatype": "FP32",
                                   "data": batch.reshape(-1).tolist()}]}).encode()


def start(cmd: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port("127.0.0.1", port, timeout=60, what=cmd[2])
    return proc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rates", default="200,500")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; the table has the medians")
    parser.add_argument("--no-kserve", action="store_true", help="leave KServe's model server out")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mco-serve-bench-"))
    bundle = train_bundle(TrainSpec(), work / "bundle")
    name = bundle.card["name"]
    X = np.loadtxt(bundle.path / "data/holdout.csv", delimiter=",", skiprows=1, dtype=np.float32)[:, :-1]
    procs: dict[str, subprocess.Popen] = {}
    servers: list[tuple[str, str, str]] = []  # (label, process, path)
    try:
        port = free_port()
        procs["mco"] = start([sys.executable, "-m", "orchestrator.cli.main", "serve", str(bundle.path),
                              "--port", str(port), "--max-body-bytes", str(4 << 20)], port)
        servers += [("mco /v1", "mco", f"http://127.0.0.1:{port}/v1/predict"),
                    ("mco /v2", "mco", f"http://127.0.0.1:{port}/v2/models/{name}/infer")]
        kserve_note = "KServe peer: left out (--no-kserve)"
        if not args.no_kserve:
            try:
                from importlib.metadata import version

                kserve_note = f"KServe peer: kserve {version('kserve')}, one worker, same model and onnxruntime settings"
            except ImportError:
                kserve_note = "KServe peer: not installed (the kserve package is in mco's dev extra)"
            else:
                peer = str(Path(__file__).with_name("kserve_peer.py"))
                for label, extra in (("kserve", []), ("kserve quiet", ["--quiet"])):
                    kport = free_port()
                    procs[label] = start([sys.executable, peer, str(bundle.path), "--port", str(kport), *extra], kport)
                    servers.append((f"{label} /v2", label, f"http://127.0.0.1:{kport}/v2/models/{name}/infer"))
        model = OnnxModel(bundle.model_path.read_bytes())
        payloads = [("1 row", X[:1]), ("64 rows", X[:64])]
        loads = [f"{int(r)}/s" for r in args.rates.split(",")] + [f"sat c={args.concurrency}"]
        # (payload, load, server) -> per-round (req/s, p50, p99, errors, cpu per request)
        results: dict[tuple[str, str, str], list[tuple[float, float, float, int, float]]] = {}
        local_p50 = {label: statistics.median(in_process(model, batch)) for label, batch in payloads}
        for rnd in range(args.rounds):
            order = servers if rnd % 2 == 0 else servers[::-1]  # interleaved: no server always goes first
            for label, batch in payloads:
                bodies = {"v1": json.dumps({"instances": batch.tolist()}).encode(), "v2": v2_body(batch)}
                for load in loads:
                    for server, proc, url in order:
                        body = bodies["v1"] if url.endswith("/v1/predict") else bodies["v2"]
                        cpu0 = cpu_seconds(procs[proc].pid)
                        if load.startswith("sat"):
                            lat, rps = asyncio.run(saturate(url, body, args.concurrency, args.seconds))
                            errors, n = 0, len(lat)
                        else:
                            rate = int(load.split("/")[0])
                            lat, errors = asyncio.run(fixed_rate(url, body, rate, args.seconds))
                            rps, n = len(lat) / args.seconds, len(lat) + errors
                        cpu = (cpu_seconds(procs[proc].pid) - cpu0) / max(n, 1)
                        results.setdefault((label, load, server), []).append(
                            (rps, pct(lat, 50), pct(lat, 99), errors, cpu))
        print(kserve_note)
        print(f"{'payload':8} {'load':9} {'server':17} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>8} {'errors':>6} "
              f"{'CPU µs/req':>10} {'p50/in-proc':>11}  ratios (req/s; p50)")
        for label, _ in payloads:
            for load in loads:
                med = {server: tuple(statistics.median(r[i] for r in results[(label, load, server)])
                                     for i in range(5)) for server, _, _ in servers}
                for server, _, _ in servers:
                    rps, p50, p99, errors, cpu = med[server]
                    ratio = ""
                    if server == "mco /v2":
                        v1 = med["mco /v1"]
                        ratio = f"v2/v1 {rps / v1[0]:.2f}x; {p50 / v1[1]:.2f}x"
                    elif server.startswith("kserve"):
                        ours = med["mco /v2"]
                        ratio = f"mco/{server.split(' /')[0]} {ours[0] / rps:.2f}x; {ours[1] / p50:.2f}x"
                    print(f"{label:8} {load:9} {server:17} {rps:7.0f} {p50 * 1e3:7.2f} {p99 * 1e3:8.2f} "
                          f"{int(errors):6d} {cpu * 1e6:10.0f} {p50 / local_p50[label]:10.0f}x  {ratio}")
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(10)


if __name__ == "__main__":
    main()
