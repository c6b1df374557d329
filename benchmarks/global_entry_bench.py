"""The global entry and a router against a router alone and a direct call, on loopback, in one run.

    .venv/bin/python benchmarks/global_entry_bench.py [--seconds 4] [--rate 300] [--repeats 3]

Starts two real model servers ("aws", "gcp"), one router per cloud (``policy: locality``,
each in its own process) and the local global entry (HAProxy from Debian, checking each
router's ``/readyz/local``). Prints:

1. open loop at ``--rate``: p50 / p99 and added latency of direct (aws's model server),
   the aws router alone, and the global entry (entry -> router -> model); errors;
2. saturation, closed loop with 64 connections: requests per second of the same three;
3. failover, 100 req/s:
   a. region-loss through the entry: aws's router and model are killed together (kill -9);
      client errors, and time until 20 answers in a row came from gcp;
   b. the router's own failover: straight to aws's router, aws's model is killed; errors
      and time until 20 answers in a row came from gcp (the router spills cross-cloud);
   c. the entry's own failover when a cloud's model dies but its router lives: through the
      entry, aws's model is killed; time until the entry stopped sending to aws's router
      (its request counter stops), which is the entry's health check at work.

Parts 1 to 3 run ``--repeats`` times; the summary prints the medians, and the ratios of
throughput to the direct call's and of the entry's failover after a region loss to the
router's own failover.

The machine is small and shared: numbers are noisy; read them side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from orchestrator.config import RouterConfig, RouterHealthConfig, RouterTargetConfig
from orchestrator.local.global_entry import GlobalEntry
from orchestrator.net import free_port
from orchestrator.router.process import RouterProcess
from orchestrator.testing.model_server import ModelServerProcess
from orchestrator.testing.traffic import LoadResult, run_load

TOKEN = "bench-token-0123456789abcdef0123456789"
CLOUDS = (("aws", "aws/us-east-1"), ("gcp", "gcp/us-central1"))


def load(url: str, rate: float, seconds: float, events: dict[float, Any] | None = None) -> LoadResult:
    return asyncio.run(run_load(url + "/v1/predict", rate=rate, duration=seconds, events=events))


def router_cfg(cloud: str, servers: dict[str, ModelServerProcess]) -> RouterConfig:
    targets = [RouterTargetConfig(name=n, url=servers[n].url, priority=i, pricing_key=k)
               for i, (n, k) in enumerate(CLOUDS)]
    return RouterConfig(port=free_port(), policy="locality", cloud=cloud, name=f"router-{cloud}", targets=targets,
                        health=RouterHealthConfig(interval_s=0.5, timeout_s=0.5, fast_recheck_s=0.1))


def fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def closed_loop(url: str, seconds: float = 3.0) -> float:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from router_bench import closed_loop as loop

    return asyncio.run(loop(url, seconds))[0]


def median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def ratio(a: float | None, b: float | None) -> str:
    return "–" if a is None or not b else f"{a / b:.2f}x"


def one_run(args: argparse.Namespace, servers: dict[str, ModelServerProcess], routers: dict[str, RouterProcess],
            entry: GlobalEntry) -> dict[str, float | None]:
    """Parts 1 to 3 once; returns every number measured, by name."""
    out: dict[str, float | None] = {}
    paths = {"direct": servers["aws"].url, "router": routers["aws"].url, "entry": entry.url}
    for url in paths.values():
        load(url, 100, 1.0)  # warm
    print(f"1. Open loop, {args.rate:.0f} req/s for {args.seconds:.0f} s")
    print(f"   {'path':8} {'p50 ms':>8} {'p99 ms':>8} {'+p50':>7} {'+p99':>7} {'errors':>7}")
    res = {name: load(url, args.rate, args.seconds) for name, url in paths.items()}
    d50, d99 = res["direct"].percentile_ms(0.5) or 0.0, res["direct"].percentile_ms(0.99) or 0.0
    for name, r in res.items():
        p50, p99 = r.percentile_ms(0.5), r.percentile_ms(0.99)
        add = name != "direct" and p50 is not None and p99 is not None
        out[f"{name}_p50_ms"], out[f"{name}_p99_ms"] = p50, p99
        out[f"{name}_errors"] = float(len(r.errors))
        print(f"   {name:8} {fmt(p50):>8} {fmt(p99):>8} {fmt(p50 - d50) if add else '–':>7} "
              f"{fmt(p99 - d99) if add else '–':>7} {len(r.errors):>7}")
    print("2. Saturation, closed loop, 64 connections, 3 s")
    for name, url in paths.items():
        out[f"{name}_rps"] = closed_loop(url)
        print(f"   {name:8} {out[f'{name}_rps']:8.0f} req/s")

    print("3. Failover at 100 req/s")
    # b. the router's own failover: straight to aws's router, aws's model dies
    t_kill: dict[str, float] = {}

    def kill_model() -> None:
        t_kill["t"] = time.time()
        servers["aws"].kill9()

    r = load(routers["aws"].url, 100, 5.0, events={1.5: kill_model})
    out["router_failover_s"] = r.moved_after(1.5, "aws")  # sample times are offsets from the start of the load
    out["router_failover_errors"] = float(len(r.errors))
    print(f"   b. router alone, aws model killed:       errors {len(r.errors):>4}   moved to gcp after "
          f"{fmt(out['router_failover_s'])} s")
    servers["aws"].start()
    time.sleep(2.0)

    # c. the entry's own failover: model dies, router lives; when does the entry stop using aws's router?
    counts: list[tuple[float, int]] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=2) as client:
            while not stop.is_set():
                try:
                    doc = client.get(f"{routers['aws'].url}/admin/status",
                                     headers={"Authorization": f"Bearer {TOKEN}"}).json()
                except Exception:  # a loaded machine (timeouts, a cut answer): try again
                    continue
                counts.append((time.time(), doc["overall"]["requests"]))
                time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    r = load(entry.url, 100, 6.0, events={1.5: kill_model})
    stop.set()
    poller.join(5)
    last_growth = max((t for (t, n), (_, m) in zip(counts[1:], counts) if n > m), default=None)
    out["entry_check_s"] = None if last_growth is None else max(0.0, last_growth - t_kill["t"])
    out["entry_check_errors"] = float(len(r.errors))
    print(f"   c. entry, aws model killed (router up):  errors {len(r.errors):>4}   entry stopped sending "
          f"to aws's router after {fmt(out['entry_check_s'])} s (its /readyz/local)")
    servers["aws"].start()
    time.sleep(2.0)

    # a. region-loss through the entry: aws's router and model die together
    def region_loss() -> None:
        t_kill["t"] = time.time()
        pid = routers["aws"].pid
        if pid:
            os.kill(pid, signal.SIGKILL)
        servers["aws"].kill9()

    r = load(entry.url, 100, 6.0, events={1.5: region_loss})
    out["entry_region_loss_s"] = r.moved_after(1.5, "aws")
    out["entry_region_loss_errors"] = float(len(r.errors))
    print(f"   a. entry, region loss (router + model):  errors {len(r.errors):>4}   moved to gcp after "
          f"{fmt(out['entry_region_loss_s'])} s")
    # aws comes back for the next run: its model server, then its router on the same port
    servers["aws"].start()
    if routers["aws"].proc is not None:
        routers["aws"].proc.wait(5)  # reap the killed router
        routers["aws"].proc = None
    routers["aws"].start()
    time.sleep(1.5)  # the entry's checks pass again (rise 2)
    return out


def summary(runs: list[dict[str, float | None]]) -> None:
    m = {k: median([r.get(k) for r in runs]) for k in runs[0]}
    print(f"\nMedians over {len(runs)} run(s)")
    print(f"   {'path':8} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'req/s':>8} {'vs direct':>10}")
    for name in ("direct", "router", "entry"):
        p50, direct = m[f"{name}_p50_ms"], m["direct_p50_ms"]
        added = "–" if name == "direct" or p50 is None or direct is None else f"{p50 - direct:+.2f}"
        print(f"   {name:8} {fmt(p50):>8} {fmt(m[f'{name}_p99_ms']):>8} {added:>8} {m[f'{name}_rps'] or 0:8.0f} "
              f"{ratio(m[f'{name}_rps'], m['direct_rps']):>10}")
    print(f"   throughput entry/router {ratio(m['entry_rps'], m['router_rps'])}; p50 entry/router "
          f"{ratio(m['entry_p50_ms'], m['router_p50_ms'])}")
    print(f"   failover: entry after region loss {fmt(m['entry_region_loss_s'])} s, router's own (model killed) "
          f"{fmt(m['router_failover_s'])} s, ratio {ratio(m['entry_region_loss_s'], m['router_failover_s'])}; "
          f"entry's health check (model down, router up) {fmt(m['entry_check_s'])} s")
    errors = {k: v for k, v in m.items() if k.endswith("_errors") and v}
    print(f"   client errors (median per run): {errors or 'none'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--repeats", type=int, default=3, help="runs of parts 1 to 3; the summary shows medians")
    ap.add_argument("--bundle", type=Path, default=None)
    args = ap.parse_args()
    if shutil.which("haproxy") is None:
        sys.exit("haproxy is not installed: run `make setup`")
    work = Path(tempfile.mkdtemp(prefix="mco-entry-bench-"))
    bundle = args.bundle
    if bundle is None:
        from orchestrator.model.train import TrainSpec, train_bundle

        bundle = train_bundle(TrainSpec(), work / "bundle").path
    started: list[Any] = []
    try:
        servers = {n: ModelServerProcess(bundle, work / f"{n}.log").start() for n, _ in CLOUDS}
        started += servers.values()
        routers = {n: RouterProcess(router_cfg(n, servers), token=TOKEN, state_dir=work / f"r-{n}").start()
                   for n, _ in CLOUDS}
        started += routers.values()
        entry = GlobalEntry(work / "entry", [(n, r.url) for n, r in routers.items()]).start()
        started.append(entry)
        time.sleep(1.5)  # the entry's checks pass (rise 2)
        print(f"2 model servers, 2 routers, HAProxy entry; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
        runs = []
        for i in range(args.repeats):
            print(f"\n--- run {i + 1} of {args.repeats}")
            runs.append(one_run(args, servers, routers, entry))
        summary(runs)
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        for thing in reversed(started):
            try:
                thing.stop()
            except Exception:  # a process the failover part already killed
                pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
