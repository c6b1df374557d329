"""The router next to a direct connection and next to HAProxy, on loopback, in one run.

    .venv/bin/python benchmarks/router_bench.py [--seconds 4] [--rounds 3] [--quick]

Starts three real model servers (`mco serve`), the mco router twice (child processes, as in
production): ``mco-python`` (the data plane on asyncio protocols) and ``mco-rust``
(``router.dataplane: rust``: the Python control plane plus mco-dataplane, tokio + hyper;
``--no-rust`` leaves it out), and HAProxy with the config `mco router export --format
haproxy` renders for the same targets. An open-loop aiohttp load generator in this process
drives them. Prints:

1. at 300 and 1,000 requests/s, interleaved rounds of direct, mco-python, mco-rust and
   HAProxy: p50, p99, added latency (the path's percentile minus direct's) and CPU per
   request of the proxy's processes (from /proc/PID/stat; for mco-rust the control plane
   and the Rust process together, and the Rust process alone in brackets; medians over rounds);
2. saturation: closed loop, 64 connections: requests per second, and requests per
   CPU-second of the proxy (throughput per core, whatever the client could offer);
3. the ratios against issue 15's targets, and the row the old hot path (uvicorn + an
   aiohttp client, removed) recorded in the same benchmark;
4. failover drills at 300 requests/s on mco (default: hedging on; and with
   ``retries.hedge: false``) and on HAProxy: the primary is broken for
   3 s by kill -9, a hang, resets mid-response (with /readyz healthy) and 503 on every
   path; client-visible errors, requests slower than 1 s, p99, time until traffic moved;
5. router memory (RSS now and peak);
6. ``--workers``: saturation (closed loop, 64 connections) of one router process next to
   ``mco router serve --workers 2`` (two processes on one port, SO_REUSEPORT), interleaved
   rounds, and the throughput ratio.

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
# What the old hot path (a uvicorn ASGI app with an aiohttp client) measured in this
# benchmark, interleaved with the data plane and HAProxy, before it was removed (two runs,
# load average 12-21 on 2 shared cores; the data plane / HAProxy in the same runs in brackets).
OLD_HOT_PATH = ("old hot path (uvicorn + aiohttp): CPU per request 500-608 µs at 300 req/s and 685-765 µs at "
                "1000 req/s (data plane 308 and 225-303, HAProxy 125-158 and 103-140), 1,545-2,195 req per "
                "CPU-second at saturation (data plane 2,562-4,798, HAProxy 7,472-11,115)")


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


async def closed_loop(url: str, seconds: float, concurrency: int = 64) -> tuple[float, int]:
    """Requests per second through ``url`` with ``concurrency`` connections, and how many answered."""
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
        return done / (time.perf_counter() - start), done


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
    ap.add_argument("--only", choices=("latency", "drills", "workers"), action="append",
                    help="run only these parts (repeatable; default: all)")
    ap.add_argument("--faults", default="kill -9,hang,reset_mid,http503", help="comma-separated drill faults")
    ap.add_argument("--no-rust", action="store_true", help="leave the Rust data plane out")
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

        parts = set(args.only or ("latency", "drills", "workers"))
        rss = peak = None
        if "latency" in parts:
            rss, peak = cost_latency_saturation(urls, servers, work, args.seconds, args.rounds, routers,
                                                rust=not args.no_rust)
        if "drills" in parts:
            drills(urls, servers, work, args.faults.split(","))
        if "workers" in parts:
            workers_saturation(urls, work, args.rounds, routers)
        if rss is not None:
            print(f"5. Router memory: RSS {rss:.0f} MB after the latency and throughput runs (peak {peak:.0f} MB)")
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (2 shared cores: noisy; compare medians and ratios)")
    finally:
        for r in routers:
            r.stop()
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)


def cpu_seconds(pid: int | list[int]) -> float:
    """User + system CPU time of process ``pid`` (all its threads; every one of a list) so far."""
    if isinstance(pid, list):
        return sum(cpu_seconds(p) for p in pid)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cost_latency_saturation(urls: list[str], servers: list[ModelServerProcess], work: Path, seconds: float,
                            rounds: int, routers: list[RouterProcess], *, rust: bool = True) -> tuple[float, float]:
    """mco (each data plane), HAProxy and direct in one run, interleaved: CPU per request, added
    latency, saturation."""
    router = RouterProcess(router_cfg(urls), token=TOKEN, state_dir=work / "r-main").start()
    routers.append(router)
    mcos = {"mco-python": router}
    if rust:
        cfg = router_cfg(urls).model_copy(update={"dataplane": "rust"})
        mcos["mco-rust"] = RouterProcess(cfg, token=TOKEN, state_dir=work / "r-rust").start()
        routers.append(mcos["mco-rust"])
    with HAProxy(router_cfg(urls), work, "latency") as hap:
        paths = {"direct": servers[0].url, **{n: r.url for n, r in mcos.items()}, "haproxy": hap.url}
        pids: dict[str, list[int]] = {"direct": [], **{n: r.pids() for n, r in mcos.items()},
                                      "haproxy": [hap.proc.pid] if hap.proc else []}
        # the Rust process alone (the last child of its router), in brackets
        dp_pid = {"mco-rust": pids["mco-rust"][1:]} if rust and len(pids["mco-rust"]) > 1 else {}
        for url in paths.values():
            load(url, 100, 1.0)  # warm the pools
        print(f"1. Open loop, {rounds} interleaved rounds of {seconds:.0f} s per rate (medians); "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"   {'rate':>6} {'path':10} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8} "
              f"{'CPU µs/req':>10} {'errors':>7}")
        Row = tuple[float, float, float, int, float]
        table: dict[int, dict[str, Row]] = {}
        for rate in (300, 1000):
            got: dict[str, list[Row]] = {p: [] for p in paths}
            for _ in range(rounds):
                for name, url in paths.items():  # interleaved, so drift hits every path alike
                    pid, own = pids[name], dp_pid.get(name)
                    c0 = cpu_seconds(pid) if pid else 0.0
                    o0 = cpu_seconds(own) if own else 0.0
                    res = load(url, rate, seconds)
                    n = max(1, len(res.samples))
                    cpu = (cpu_seconds(pid) - c0) / n * 1e6 if pid else float("nan")
                    alone = (cpu_seconds(own) - o0) / n * 1e6 if own else float("nan")
                    got[name].append((res.percentile_ms(0.5) or float("nan"), res.percentile_ms(0.99) or float("nan"),
                                      cpu, len(res.errors), alone))
            med = {p: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v),
                       statistics.median(x[2] for x in v), sum(x[3] for x in v), statistics.median(x[4] for x in v))
                   for p, v in got.items()}
            table[rate] = med
            for name in paths:
                p50, p99, cpu, errs, alone = med[name]
                add50 = None if name == "direct" else p50 - med["direct"][0]
                add99 = None if name == "direct" else p99 - med["direct"][1]
                extra = f"  (Rust process alone {alone:.0f} µs/req)" if name in dp_pid else ""
                print(f"   {rate:>6} {name:10} {p50:8.2f} {p99:8.2f} {fmt(add50):>8} {fmt(add99):>8} "
                      f"{fmt(None if name == 'direct' else cpu, 0):>10} {errs:>7}{extra}")
        print()

        # ---- 2. saturation ------------------------------------------------------------
        print(f"2. Saturation: closed loop, 64 connections, 3 s, {rounds} interleaved rounds (medians)")
        sat: dict[str, list[tuple[float, float]]] = {p: [] for p in paths if p != "direct"}
        for _ in range(rounds):
            for name in sat:
                pid = pids[name]
                assert pid
                c0 = cpu_seconds(pid)
                rate, done = asyncio.run(closed_loop(paths[name], 3.0))
                sat[name].append((rate, done / max(1e-9, cpu_seconds(pid) - c0)))
        satm = {p: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for p, v in sat.items()}
        for name, (rate, per_core) in satm.items():
            print(f"   {name:10} {rate:8.0f} req/s   {per_core:8.0f} req per CPU-second (per core)")
        print()
    print("3. Against the targets (issue 15), each mco data plane / HAProxy:")
    hap_row = {rate: table[rate]["haproxy"] for rate in (300, 1000)}
    rss = peak = 0.0
    for name, r in mcos.items():
        print(f"   {name}:")
        for rate in (300, 1000):
            ratio = table[rate][name][2] / hap_row[rate][2]
            print(f"     CPU per request at {rate:>4} req/s: {table[rate][name][2]:.0f} / {hap_row[rate][2]:.0f} µs"
                  f" = {ratio:.2f}x (target <= 1.5x)")
        add50 = table[1000][name][0] - table[1000]["direct"][0]
        add99 = table[1000][name][1] - table[1000]["direct"][1]
        print(f"     added latency at 1000 req/s: +{add50:.2f} ms p50 (target <= 0.2), +{add99:.2f} ms p99 "
              f"(target <= 1.5)")
        print(f"     saturation per core: {satm[name][1]:.0f} / {satm['haproxy'][1]:.0f} = "
              f"{satm[name][1] / satm['haproxy'][1]:.2f}x (target >= 0.7x)")
        mems = [rss_mb(p) for p in r.pids()]
        now, top = sum(m[0] for m in mems), sum(m[1] for m in mems)
        alone = f"; the Rust process alone {mems[-1][0]:.0f} MB" if len(mems) > 1 else ""
        print(f"     router RSS {now:.0f} MB, peak {top:.0f} MB (target < 100 MB){alone}")
        if name == "mco-python":
            rss, peak = now, top
    print(f"   recorded, not measured: {OLD_HOT_PATH}")
    print()
    return rss, peak


def workers_saturation(urls: list[str], work: Path, rounds: int, routers: list[RouterProcess]) -> float:
    """One router process next to two on one port: closed-loop throughput and the ratio."""
    started = {n: RouterProcess(router_cfg(urls), token=TOKEN, state_dir=work / f"r-workers{n}", workers=n).start()
               for n in (1, 2)}
    routers.extend(started.values())
    for r in started.values():
        asyncio.run(closed_loop(r.url, 1.0))  # warm every worker's pools
    print(f"6. Workers: closed loop, 64 connections, 3 s, {rounds} interleaved rounds (medians); "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    got: dict[int, list[float]] = {n: [] for n in started}
    for _ in range(rounds):
        for n, r in started.items():
            got[n].append(asyncio.run(closed_loop(r.url, 3.0))[0])
    med = {n: statistics.median(v) for n, v in got.items()}
    for n, rate in med.items():
        print(f"   --workers {n}  {rate:8.0f} req/s")
    ratio = med[2] / med[1]
    print(f"   ratio 2 workers / 1 worker: {ratio:.2f}x (the model servers and the load generator share the cores)")
    print()
    return ratio


def drills(urls: list[str], servers: list[ModelServerProcess], work: Path, faults: list[str]) -> None:
    print("4. Failover drills: 300 req/s for 6 s, the primary broken from t=1.5 s for 3 s")
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
