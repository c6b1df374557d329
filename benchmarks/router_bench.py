"""The router next to a direct connection and next to HAProxy, on loopback, in one run.

    .venv/bin/python benchmarks/router_bench.py [--seconds 4] [--rounds 3] [--quick]

Starts three real model servers (`mco serve`), the mco router (a child process, as in
production) and HAProxy with the config `mco router export --format haproxy` renders
for the same targets. An open-loop aiohttp load generator in this process drives them.
Prints:

0. the hot-path client: the router with aiohttp vs with httpx as its upstream client;
1. added latency, p50 and p99, at 200 and 1,000 requests/s: direct, mco, HAProxy
   (medians over rounds; "added" = the path's percentile minus direct's);
2. maximum throughput (closed loop, 64 connections) through each;
3. failover drills at 300 requests/s on mco (default: hedging on; and with
   ``retries.hedge: false``) and on HAProxy: the primary is broken for
   3 s by kill -9, a hang, resets mid-response (with /readyz healthy) and 503 on every
   path; client-visible errors, requests slower than 1 s, p99, time until traffic moved;
4. router memory (RSS now and peak).

The machine is small and shared: numbers are noisy; read medians and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.config import (
    RouterConfig,
    RouterHealthConfig,
    RouterOutlierConfig,
    RouterRetryConfig,
    RouterTargetConfig,
)
from orchestrator.net import free_port, port_open
from orchestrator.router.export import render
from orchestrator.router.process import RouterProcess
from orchestrator.testing.faults import FaultProxy
from orchestrator.testing.model_server import ModelServerProcess
from orchestrator.testing.traffic import LoadResult, predict_body, run_load

CLOUDS = (("aws", "aws/us-east-1"), ("gcp", "gcp/us-central1"), ("azure", "azure/eastus"))
TOKEN = "bench-token"


class HAProxy:
    def __init__(self, cfg: RouterConfig, workdir: Path, name: str) -> None:
        self.cfg = cfg
        self.path = workdir / f"haproxy-{name}.cfg"
        self.path.write_text(render(cfg, "haproxy"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.cfg.port}"

    def __enter__(self) -> HAProxy:
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(self.path)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c rejected the exported config: {check.stderr}")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.path)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.cfg.port):
            if time.monotonic() > deadline:
                raise RuntimeError("haproxy did not start")
            time.sleep(0.05)
        time.sleep(0.3)  # first health checks
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


def router_cfg(urls: list[str], *, hedge: bool = True) -> RouterConfig:
    targets = [RouterTargetConfig(name=n, url=u, priority=i, pricing_key=k)
               for i, ((n, k), u) in enumerate(zip(CLOUDS, urls))]
    return RouterConfig(port=free_port(), targets=targets, health=RouterHealthConfig(),
                        outlier=RouterOutlierConfig(base_ejection_s=2.0), retries=RouterRetryConfig(hedge=hedge))


def load(url: str, rate: float, seconds: float, events: dict[float, Any] | None = None) -> LoadResult:
    return asyncio.run(run_load(url + "/v1/predict", rate=rate, duration=seconds, events=events))


async def one_at_a_time(url: str, n: int = 300) -> tuple[float, float]:
    """p50 and p99 (ms) of ``n`` requests sent one after another: latency without queueing."""
    import aiohttp

    body = predict_body()
    lat: list[float] = []
    async with aiohttp.ClientSession() as session:
        for i in range(n + 30):
            t0 = time.perf_counter()
            async with session.post(url + "/v1/predict", data=body, headers={"content-type": "application/json"}) as r:
                await r.read()
            if i >= 30:  # warm-up
                lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99)]


async def closed_loop(url: str, seconds: float, concurrency: int = 64) -> float:
    import aiohttp

    body = predict_body()
    done = 0
    stop = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                try:
                    async with session.post(url + "/v1/predict", data=body,
                                            headers={"content-type": "application/json"}) as resp:
                        await resp.read()
                        if resp.status == 200:
                            done += 1
                except aiohttp.ClientError:
                    pass

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - start)


def rss_mb(pid: int) -> tuple[float, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def error_kinds(res: LoadResult) -> str:
    from collections import Counter

    kinds = Counter(s.error or f"HTTP {s.status}" for s in res.errors)
    return ", ".join(f"{k} x{n}" for k, n in kinds.most_common(3))


def fmt(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0, help="seconds per latency measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bundle", type=Path, default=None, help="a trained bundle (default: train one)")
    ap.add_argument("--quick", action="store_true", help="one round, shorter runs")
    ap.add_argument("--only", choices=("client", "latency", "drills"), action="append",
                    help="run only these parts (repeatable; default: all)")
    ap.add_argument("--faults", default="kill -9,hang,reset_mid,http503", help="comma-separated drill faults")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.rounds = 2.0, 1
    if shutil.which("haproxy") is None:
        sys.exit("haproxy is not installed: run `make setup` (scripts/setup/40-haproxy.sh)")

    work = Path(tempfile.mkdtemp(prefix="mco-router-bench-"))
    bundle = args.bundle
    if bundle is None:
        from orchestrator.model.train import TrainSpec, train_bundle

        bundle = train_bundle(TrainSpec(), work / "bundle").path
    servers = [ModelServerProcess(bundle, work / f"{n}.log") for n, _ in CLOUDS]
    routers: list[RouterProcess] = []
    try:
        for s in servers:
            s.start()
        urls = [s.url for s in servers]
        print(f"3 model servers up; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}\n")

        parts = set(args.only or ("client", "latency", "drills"))
        rss = peak = None
        # ---- 0. the hot-path client ------------------------------------------------------
        if "client" in parts:
            client_comparison(urls, work, args.seconds)
        if "latency" in parts:
            rss, peak = latency_and_throughput(urls, servers, work, args.seconds, args.rounds, routers)
        if "drills" in parts:
            drills(urls, servers, work, args.faults.split(","))
        if rss is not None:
            print(f"4. Router memory: RSS {rss:.0f} MB after the latency and throughput runs (peak {peak:.0f} MB)")
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (2 shared cores: noisy; compare medians and ratios)")
    finally:
        for r in routers:
            r.stop()
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)


def client_comparison(urls: list[str], work: Path, seconds: float) -> None:
    print("0. Upstream client on the router's hot path (300 req/s open loop, then closed loop 64 conns)")
    print(f"   {'client':8} {'p50 ms':>8} {'p99 ms':>8} {'max req/s':>10}")
    clients: dict[str, tuple[float, float, float]] = {}
    for client in ("aiohttp", "httpx"):
        with RouterProcess(router_cfg(urls), token=TOKEN, state_dir=work / f"r-{client}", client=client) as r:
            load(r.url, 100, 1.0)  # warm the pools
            res = load(r.url, 300, seconds)
            tput = asyncio.run(closed_loop(r.url, min(seconds, 3.0)))
            clients[client] = (res.percentile_ms(0.5) or 0, res.percentile_ms(0.99) or 0, tput)
            print(f"   {client:8} {clients[client][0]:8.2f} {clients[client][1]:8.2f} {tput:10.0f}"
                  f"   errors {len(res.errors)}")
    a, h = clients["aiohttp"], clients["httpx"]
    print(f"   ratio httpx/aiohttp: p50 {h[0] / a[0]:.2f}x, p99 {h[1] / a[1]:.2f}x, "
          f"throughput {a[2] / h[2]:.2f}x in aiohttp's favour\n")


def latency_and_throughput(urls: list[str], servers: list[ModelServerProcess], work: Path, seconds: float, rounds: int,
                           routers: list[RouterProcess]) -> tuple[float, float]:
    router = RouterProcess(router_cfg(urls), token=TOKEN, state_dir=work / "r-main").start()
    routers.append(router)
    hcfg = router_cfg(urls)
    with HAProxy(hcfg, work, "latency") as hap:
        paths = {"direct": servers[0].url, "mco": router.url, "haproxy": hap.url}
        for url in paths.values():
            load(url, 100, 1.0)
        print(f"1. Added latency (medians of {rounds} rounds of {seconds:.0f} s, open loop)")
        print(f"   {'rate':>6} {'path':8} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8} {'errors':>7}")
        seq: dict[str, list[tuple[float, float]]] = {p: [] for p in paths}
        for _ in range(rounds):
            for name, url in paths.items():
                seq[name].append(asyncio.run(one_at_a_time(url)))
        d50 = statistics.median(x[0] for x in seq["direct"])
        d99 = statistics.median(x[1] for x in seq["direct"])
        for name in paths:
            p50 = statistics.median(x[0] for x in seq[name])
            p99 = statistics.median(x[1] for x in seq[name])
            add50 = None if name == "direct" else p50 - d50
            add99 = None if name == "direct" else p99 - d99
            print(f"   {'1-by-1':>6} {name:8} {p50:8.2f} {p99:8.2f} {fmt(add50):>8} {fmt(add99):>8} {0:>7}")
        for rate in (200, 1000):
            got: dict[str, list[tuple[float, float, int]]] = {p: [] for p in paths}
            for _ in range(rounds):
                for name, url in paths.items():  # interleaved, so drift hits every path alike
                    res = load(url, rate, seconds)
                    got[name].append((res.percentile_ms(0.5) or float("nan"),
                                      res.percentile_ms(0.99) or float("nan"), len(res.errors)))
            med = {p: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v),
                       sum(x[2] for x in v)) for p, v in got.items()}
            for name in paths:
                p50, p99, errs = med[name]
                add50 = None if name == "direct" else p50 - med["direct"][0]
                add99 = None if name == "direct" else p99 - med["direct"][1]
                print(f"   {rate:>6} {name:8} {p50:8.2f} {p99:8.2f} {fmt(add50):>8} {fmt(add99):>8} {errs:>7}")
        print()

        # ---- 2. maximum throughput ---------------------------------------------------
        print("2. Maximum throughput (closed loop, 64 connections, 3 s)")
        for name, url in paths.items():
            print(f"   {name:8} {asyncio.run(closed_loop(url, 3.0)):8.0f} req/s")
        print()
    return rss_mb(router.pid or 0)


def drills(urls: list[str], servers: list[ModelServerProcess], work: Path, faults: list[str]) -> None:
    print("3. Failover drills: 300 req/s for 6 s, the primary broken from t=1.5 s for 3 s")
    print(f"   {'fault':10} {'proxy':10} {'errors':>7} {'>1s':>5} {'p99 ms':>8} {'max ms':>8} {'moved s':>8}")
    done: list[tuple[str, str, LoadResult]] = []
    for fault in faults:
        for proxy in ("mco", "mco-nohedge", "haproxy"):
            for s in servers:
                s.start()
            fp = None
            target_urls = list(urls)
            if fault != "kill -9":
                fp = FaultProxy(servers[0].port).start()
                target_urls[0] = fp.url
            cfg = router_cfg(target_urls, hedge=proxy != "mco-nohedge")
            restart: threading.Thread | None = None
            if fault == "kill -9":
                restart = threading.Thread(target=servers[0].start)
                events = {1.5: servers[0].kill9, 4.5: restart.start}
            else:
                assert fp is not None
                events = {1.5: (lambda f=fault, p=fp: p.set_mode(f)), 4.5: (lambda p=fp: p.set_mode("pass"))}
            try:
                if proxy.startswith("mco"):
                    with RouterProcess(cfg, token=TOKEN, state_dir=work / f"drill-{len(done)}") as r:
                        load(r.url, 100, 0.5)
                        res = load(r.url, 300, 6.0, events)
                else:
                    with HAProxy(cfg, work, f"drill-{len(done)}") as hap:
                        load(hap.url, 100, 0.5)
                        res = load(hap.url, 300, 6.0, events)
            finally:
                if restart is not None and restart.is_alive():
                    restart.join()
                if fp is not None:
                    fp.stop()
            done.append((fault, proxy, res))
            moved = res.moved_after(1.5, "aws")
            print(f"   {fault:10} {proxy:10} {len(res.errors):>7} {res.slower_than(1.0):>5} "
                  f"{fmt(res.percentile_ms(0.99, ok_only=False), 1):>8} "
                  f"{max(s.latency for s in res.samples) * 1000:8.1f} {fmt(moved):>8}  {error_kinds(res)}")
    print()


if __name__ == "__main__":
    main()
