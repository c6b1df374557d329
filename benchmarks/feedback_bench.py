"""What request ids and kept predictions cost the router, and what the bound costs in memory.

    .venv/bin/python benchmarks/feedback_bench.py [--seconds 4] [--rounds 2]

Three real model servers and three routers in front of them (child processes, as in
production), the same but for ``router.feedback``:

* ``off``         ``keep: 0``: no request id, nothing kept (the router before issue 20);
* ``ids+kept``    request ids and kept predictions, no live-metrics refresh (``refresh_s`` 1 h);
* ``+monitoring`` the default: the same, plus the live metrics recomputed every 5 s beside
                  the hot path (drift, the gate's metrics, gauges).

At 300 and 1,000 requests/s, interleaved rounds (open loop, the drill's load generator):
p50, p99, the p50 added over ``off`` (target: +0.1 ms), and the router's CPU per request.
Then the memory of the bound: 100,000 kept answers of this model (real answer bodies),
raw as the hot path keeps them and once parsed, measured with tracemalloc in this process.

The machine is small and shared: read medians and differences, not single numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.config import RouterConfig, RouterFeedbackConfig, RouterRetryConfig, RouterTargetConfig
from orchestrator.net import free_port
from orchestrator.router.process import RouterProcess
from orchestrator.testing.model_server import ModelServerProcess
from orchestrator.testing.traffic import predict_body, run_load

CLOUDS = ("aws", "gcp", "azure")
TOKEN = "bench-token-for-feedback"
VARIANTS = {
    "off": RouterFeedbackConfig(keep=0),
    "ids+kept": RouterFeedbackConfig(refresh_s=3600.0),
    "+monitoring": RouterFeedbackConfig(),
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(router: RouterProcess, rate: float, seconds: float) -> dict[str, float]:
    assert router.pid is not None
    cpu0 = cpu_seconds(router.pid)
    res = asyncio.run(run_load(router.url + "/v1/predict", rate=rate, duration=seconds))
    cpu = cpu_seconds(router.pid) - cpu0
    return {"p50": res.percentile_ms(0.5) or float("nan"), "p99": res.percentile_ms(0.99) or float("nan"),
            "cpu_us": cpu / max(1, len(res.samples)) * 1e6, "errors": float(len(res.errors))}


def memory_at_bound(body: bytes, capacity: int) -> dict[str, float]:
    """Bytes held by ``capacity`` kept answers, raw and parsed (tracemalloc, this process)."""
    from orchestrator.router.feedback import KeptPredictions

    class _Router:  # what keep() and parsed() read of the router: nothing else is touched
        kept = None

    tracemalloc.start()
    kept = KeptPredictions(_Router(), capacity=capacity)  # type: ignore[arg-type]
    base = tracemalloc.get_traced_memory()[0]
    for i in range(capacity + 1000):
        kept.keep("aws", 200, 0.002, bytes(body) + b" " * (i % 2))  # a fresh bytes object per answer
    raw = tracemalloc.get_traced_memory()[0] - base
    for entry in kept.items.values():
        kept.parsed(entry)
    parsed = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return {"entries": len(kept.items), "dropped": kept.dropped, "raw_mb": raw / 2**20, "parsed_mb": parsed / 2**20,
            "body_bytes": len(body)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rates", default="300,1000")
    ap.add_argument("--bundle", type=Path, default=None)
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    work = Path(tempfile.mkdtemp(prefix="mco-feedback-bench-"))
    bundle = args.bundle
    if bundle is None:
        from orchestrator.model.train import TrainSpec, train_bundle

        bundle = train_bundle(TrainSpec(), work / "bundle").path
    servers = [ModelServerProcess(bundle, work / f"{c}.log").start() for c in CLOUDS]
    routers: dict[str, RouterProcess] = {}
    try:
        for name, fb in VARIANTS.items():
            cfg = RouterConfig(port=free_port(), policy="weighted", feedback=fb,
                               targets=[RouterTargetConfig(name=c, url=s.url) for c, s in zip(CLOUDS, servers)],
                               retries=RouterRetryConfig())
            routers[name] = RouterProcess(cfg, token=TOKEN, state_dir=work / name).start()
        results: dict[tuple[str, float], list[dict[str, float]]] = {}
        for router in routers.values():  # warm each path once
            measure(router, 200, 1.0)
        for r in range(args.rounds):
            for rate in rates:
                for name, router in routers.items():
                    results.setdefault((name, rate), []).append(measure(router, rate, args.seconds))
            print(f"round {r + 1} of {args.rounds} done", file=sys.stderr)
        med = {k: {m: statistics.median(x[m] for x in v) for m in v[0]} for k, v in results.items()}
        print(f"\nrouter overhead of request ids and kept predictions ({args.rounds} rounds x {args.seconds:g} s, medians)")
        print(f"{'rate':>6}  {'variant':<12} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'CPU us/req':>10} {'errors':>6}")
        for rate in rates:
            off = med[("off", rate)]["p50"]
            for name in VARIANTS:
                m = med[(name, rate)]
                print(f"{rate:>6.0f}  {name:<12} {m['p50']:>8.3f} {m['p99']:>8.3f} {m['p50'] - off:>+8.3f} "
                      f"{m['cpu_us']:>10.0f} {m['errors']:>6.0f}")
        print("\nrouter RSS after the runs: " + ", ".join(
            f"{n} {rss_mb(p.pid):.0f} MB" for n, p in routers.items() if p.pid is not None))
        import httpx

        resp = httpx.post(servers[0].url + "/v1/predict", content=predict_body(),
                          headers={"content-type": "application/json"}, timeout=30)
        assert resp.status_code == 200, resp.text
        body = resp.content
        mem = memory_at_bound(body, 100_000)
        print(f"\nmemory at the bound: {mem['entries']:.0f} kept answers ({mem['dropped']:.0f} dropped), "
              f"answer body {mem['body_bytes']:.0f} B: raw {mem['raw_mb']:.1f} MB, "
              f"after parsing {mem['parsed_mb']:.1f} MB (target: under 100 MB)")
    finally:
        for router in routers.values():
            router.stop()
        for s in servers:
            s.stop()


if __name__ == "__main__":
    main()
