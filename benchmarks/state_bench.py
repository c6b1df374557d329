"""Release state timings, SQLite against the objectstore backend on the three local emulators.

    .venv/bin/python benchmarks/state_bench.py [--releases 20] [--rounds 15]

Starts its own storage emulators (moto, fake-gcs-server, Azurite) on free loopback ports
under a temporary directory, and stops them at the end. Nothing else is touched.

  history        reading a history of N releases (``mco history``'s work, in process):
                 SQLite; objectstore with the local record cache warm (the usual case: records
                 never change); objectstore cold (cache emptied before each read)
  lock           taking and giving back the deploy lock: flock against a lease on a majority
                 of three stores (the lease commits a barrier record to the history)
  no-op deploy   the state's share of a three-cloud deploy that changes nothing on the
                 clusters: lock, recover, begin, two updates per cloud, finish, unlock

It prints medians, the objectstore/SQLite ratios, and the time the objectstore state adds to
a deploy (target: < 1 s on the emulators).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

CLOUDS = ("aws", "gcp", "azure")


def _timed(fn: Callable[[], Any], rounds: int, before: Callable[[], None] | None = None) -> list[float]:
    out = []
    for _ in range(rounds):
        if before is not None:
            before()
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--releases", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    from orchestrator.config import load_config
    from orchestrator.local.base import LocalContext, update_local_config
    from orchestrator.local.storage import StorageStandIn
    from orchestrator.releases.lock import DeployLock
    from orchestrator.releases.state.objectstore import ObjectBackend, ObjectHistory
    from orchestrator.releases.store import CloudPlan, ReleaseStore, state_dir_for

    root = Path(tempfile.mkdtemp(prefix="mco-state-bench-"))
    ctx = LocalContext(state_dir=root / "local", config_path=root / "mco.local.yaml")
    stand_in = StorageStandIn()
    try:
        print("setup: starting the three storage emulators (not timed)", flush=True)
        update_local_config(ctx.config_path, stand_in.up(ctx))
        base = yaml.safe_load(ctx.config_path.read_text())
        project = {"project": {"name": f"bench{int(time.time())}", "state_dir": str(root / "state")},
                   "clouds": {c: base["clouds"][c] for c in CLOUDS},
                   "state": {"backend": "objectstore", "stores": list(CLOUDS), "lease_ttl_s": 60}}
        path = root / "mco.yaml"
        path.write_text(yaml.safe_dump(project))
        cfg = load_config(path)
        manifests = [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "model", "n": i},
                      "spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": "x" * 80}]}}}}
                     for i in range(6)]
        plan = CloudPlan(model_digest="a" * 64, image_ref="img@sha256:" + "b" * 64, image_digest="sha256:" + "b" * 64,
                         overlay="kind", replicas=2, manifests=manifests)

        def state_of_a_deploy(history: Any, lock: Any) -> None:
            with lock:
                history.recover_interrupted()
                number = history.begin(kind="deploy", model_digest="a" * 64, clouds=dict.fromkeys(CLOUDS, plan))
                for c in CLOUDS:
                    history.update_cloud(number, c, status="applying")
                for c in CLOUDS:
                    history.update_cloud(number, c, status="deployed", ready_replicas=2)
                history.finish(number)

        print(f"setup: a history of {args.releases} releases in each backend (not timed)", flush=True)
        sqlite = ReleaseStore(state_dir_for(cfg) / "releases.db", cfg.project.name)
        flock = DeployLock(state_dir_for(cfg), cfg.project.name)
        backend = ObjectBackend(cfg)
        objhist = ObjectHistory(backend)
        for _ in range(args.releases):
            state_of_a_deploy(sqlite, flock)
            state_of_a_deploy(objhist, backend.lock())

        def fresh_read() -> None:
            reader = ObjectBackend(cfg)  # a new process's view: nothing folded in memory
            try:
                assert len(ObjectHistory(reader).list()) >= args.releases
            finally:
                reader.close()

        cache = state_dir_for(cfg) / "state-cache"
        results: dict[str, list[float]] = {
            "history sqlite": _timed(lambda: sqlite.list(), args.rounds),
            "history objectstore (cache warm)": _timed(fresh_read, args.rounds),
            "history objectstore (cache cold)": _timed(fresh_read, args.rounds,
                                                       before=lambda: shutil.rmtree(cache, ignore_errors=True)),
        }
        fresh_read()  # warm the cache again

        def flock_cycle() -> None:
            flock.acquire()
            flock.release()

        def lease_cycle() -> None:
            lease = backend.lock()
            lease.acquire()
            lease.release()

        results["lock acquire+release flock"] = _timed(flock_cycle, args.rounds)
        results["lock acquire+release lease"] = _timed(lease_cycle, args.rounds)
        results["no-op deploy state sqlite"] = _timed(lambda: state_of_a_deploy(sqlite, flock), args.rounds)
        results["no-op deploy state objectstore"] = _timed(lambda: state_of_a_deploy(objhist, backend.lock()),
                                                           args.rounds)
        sqlite.close()
        backend.close()
    finally:
        stand_in.down(ctx)
        shutil.rmtree(root, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    print()
    print(f"{'measure':<38}{'median ms':>12}")
    for key, value in med.items():
        print(f"{key:<38}{value * 1000:>12.1f}")
    print()
    print(f"history     objectstore/sqlite: warm {med['history objectstore (cache warm)'] / med['history sqlite']:.0f}x, "
          f"cold {med['history objectstore (cache cold)'] / med['history sqlite']:.0f}x")
    print(f"lock        lease/flock: {med['lock acquire+release lease'] / med['lock acquire+release flock']:.0f}x")
    added = med["no-op deploy state objectstore"] - med["no-op deploy state sqlite"]
    print(f"no-op deploy: objectstore/sqlite {med['no-op deploy state objectstore'] / med['no-op deploy state sqlite']:.0f}x;"
          f" the objectstore state adds {added:.2f} s to a deploy (target < 1 s): {'met' if added < 1 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
