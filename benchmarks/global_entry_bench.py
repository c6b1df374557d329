"""The global entry and a router against a router alone and a direct call, on loopback, in one run.

    .venv/bin/python benchmarks/global_entry_bench.py [--seconds 4] [--rate 300]

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

The machine is small and shared: numbers are noisy; read them side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rate", type=float, default=300.0)
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
        paths = {"direct": servers["aws"].url, "router": routers["aws"].url, "entry": entry.url}
        for url in paths.values():
            load(url, 100, 1.0)  # warm
        print(f"2 model servers, 2 routers, HAProxy entry; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}\n")
        print(f"1. Open loop, {args.rate:.0f} req/s for {args.seconds:.0f} s")
        print(f"   {'path':8} {'p50 ms':>8} {'p99 ms':>8} {'+p50':>7} {'+p99':>7} {'errors':>7}")
        res = {name: load(url, args.rate, args.seconds) for name, url in paths.items()}
        d50, d99 = res["direct"].percentile_ms(0.5) or 0.0, res["direct"].percentile_ms(0.99) or 0.0
        for name, r in res.items():
            p50, p99 = r.percentile_ms(0.5), r.percentile_ms(0.99)
            add = name != "direct" and p50 is not None and p99 is not None
            print(f"   {name:8} {fmt(p50):>8} {fmt(p99):>8} {fmt(p50 - d50) if add else '–':>7} "
                  f"{fmt(p99 - d99) if add else '–':>7} {len(r.errors):>7}")
        print("\n2. Saturation, closed loop, 64 connections, 3 s")
        for name, url in paths.items():
            print(f"   {name:8} {closed_loop(url):8.0f} req/s")

        print("\n3. Failover at 100 req/s")
        # b. the router's own failover: straight to aws's router, aws's model dies
        t_kill: dict[str, float] = {}

        def kill_model() -> None:
            t_kill["t"] = time.time()
            servers["aws"].kill9()

        r = load(routers["aws"].url, 100, 5.0, events={1.5: kill_model})
        moved = r.moved_after(1.5, "aws")  # sample times are offsets from the start of the load
        print(f"   b. router alone, aws model killed:       errors {len(r.errors):>4}   moved to gcp after "
              f"{fmt(moved)} s")
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
        entry_s = None if last_growth is None else max(0.0, last_growth - t_kill["t"])
        print(f"   c. entry, aws model killed (router up):  errors {len(r.errors):>4}   entry stopped sending "
              f"to aws's router after {fmt(entry_s)} s (its /readyz/local)")
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
        moved = r.moved_after(1.5, "aws")
        print(f"   a. entry, region loss (router + model):  errors {len(r.errors):>4}   moved to gcp after "
              f"{fmt(moved)} s")
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
