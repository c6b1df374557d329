"""How long a three-wave release takes next to an all-at-once one, with the bake time set apart.

    .venv/bin/python benchmarks/waves_bench.py [--rounds 2] [--bake 3]

On the local runtime (three real model servers, `mco serve`), a real router (``weighted``)
and 60 labelled requests/s with feedback, as the ``silent-bad-model`` drill runs them. Each
round releases a new good bundle twice, alternating which side goes first:

  all-at-once  the three clouds switch model server at once (one thread each, as the deploy
               applies every cloud in parallel)
  waves        ``run_waves``: cloud by cloud, steps of 10/50/100 %, each baked ``--bake`` s,
               then judged (``error_rate<0.05``, ``live_macro_f1>=0.7``, 40 labelled answers)

and prints medians: the total, the bake (steps x bake), the waiting for enough labelled
answers, and the rest (rollouts and weight changes), with waves / all-at-once ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TOKEN = "waves-bench-token-0123456789abcdef"
CLOUDS = ("aws", "gcp", "azure")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bake", type=float, default=3.0, help="analysis.bake_s of each step")
    args = parser.parse_args()

    from sklearn.datasets import load_digits

    from orchestrator.config import RouterConfig, RouterFeedbackConfig, RouterRetryConfig, RouterTargetConfig
    from orchestrator.drills.local_waves import LocalWaveOps
    from orchestrator.drills.scenarios import variant_bundle
    from orchestrator.local.runtime import LocalRuntime
    from orchestrator.model.train import TrainSpec, train_bundle
    from orchestrator.net import free_port
    from orchestrator.releases.strategies.waves import RouterTraffic, WavePlan, run_waves
    from orchestrator.router.process import RouterProcess
    from orchestrator.testing.labelled import LabelledTraffic

    work = Path(tempfile.mkdtemp(prefix="mco-waves-bench-"))
    base = train_bundle(TrainSpec(), work / "m0")
    rt = LocalRuntime(work / "rt", clouds=CLOUDS)
    rt.deploy(base)
    cfg = RouterConfig(port=free_port(), policy="weighted",
                       targets=[RouterTargetConfig(name=t.cloud, url=t.url, weight=100) for t in rt.targets()],
                       retries=RouterRetryConfig(per_try_timeout_s=2.0, connect_timeout_s=1.0, hedge=False),
                       feedback=RouterFeedbackConfig(refresh_s=10.0))
    router = RouterProcess(cfg, token=TOKEN, state_dir=work / "router").start()
    traffic = RouterTraffic([router.url], TOKEN)
    X, y = load_digits(return_X_y=True)
    plan = WavePlan(waves=[[c] for c in CLOUDS], rules=["error_rate<0.05", "live_macro_f1>=0.7"],
                    steps=[10, 50, 100], bake_s=args.bake, max_wait_s=120.0, interval_s=0.5, min_samples=40)
    rows: dict[str, list[dict[str, float]]] = {"all-at-once": [], "waves": []}
    windows: dict[str, list[tuple[float, float]]] = {"all-at-once": [], "waves": []}
    current = base
    n = 0
    try:
        with LabelledTraffic(router.url, X, y, rate=60) as load:
            time.sleep(2)
            for r in range(args.rounds):
                for side in ("all-at-once", "waves") if r % 2 == 0 else ("waves", "all-at-once"):
                    n += 1
                    new = variant_bundle(base, work / f"m{n}", version=str(n + 1))
                    ops = LocalWaveOps(rt, new, current, release=f"r{n}", previous_release=f"r{n - 1}")
                    started, wall = time.perf_counter(), time.time()
                    if side == "all-at-once":
                        with ThreadPoolExecutor(len(CLOUDS)) as pool:
                            failed = [e for e in pool.map(lambda c, o=ops: o.deploy([c])[c], CLOUDS) if e]
                        if failed:
                            raise SystemExit(f"all-at-once rollout failed: {failed}")
                        total = time.perf_counter() - started
                        rows[side].append({"total": total, "bake": 0.0, "wait": 0.0, "rest": total})
                    else:
                        doc = run_waves(plan, ops, traffic)
                        total = time.perf_counter() - started
                        if doc["status"] != "deployed":
                            raise SystemExit(f"waves did not finish: {doc.get('abort')}")
                        steps = [s for w in doc["waves"] for s in w["steps"]]
                        bake = plan.bake_s * len(steps)
                        wait = sum(float(s.get("waited_s") or 0.0) for s in steps)
                        rows[side].append({"total": total, "bake": bake, "wait": wait, "rest": total - bake - wait})
                    windows[side].append((wall, time.time() + 1.0))  # answers still in flight count too
                    current = new
                    print(f"  round {r + 1} {side:<11} {rows[side][-1]['total']:6.1f} s", flush=True)
            errors = {side: sum(1 for a in load.answers if a.status != 200 and any(t0 <= a.sent <= t1 for t0, t1 in w))
                      for side, w in windows.items()}
    finally:
        traffic.close()
        router.stop()
        rt.down()

    med = {side: {k: statistics.median(v[k] for v in vals) for k in ("total", "bake", "wait", "rest")}
           for side, vals in rows.items()}
    a, w = med["all-at-once"], med["waves"]
    print(f"\nmedians over {args.rounds} rounds (bake_s {args.bake:g}, 3 waves x 3 steps, 60 labelled req/s)")
    print(f"  {'':<12}{'total s':>9}{'bake s':>9}{'wait s':>9}{'rest s':>9}")
    for side in ("all-at-once", "waves"):
        m = med[side]
        print(f"  {side:<12}{m['total']:9.1f}{m['bake']:9.1f}{m['wait']:9.1f}{m['rest']:9.1f}")
    print(f"  waves / all-at-once: {w['total'] / a['total']:.1f}x in total; "
          f"{w['rest'] / a['rest']:.1f}x without the bake and the wait for labelled answers")
    print(f"  client errors while releasing: all-at-once {errors['all-at-once']}, waves {errors['waves']} "
          "(all-at-once switches every cloud's server at once: the router has nowhere to go meanwhile)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
