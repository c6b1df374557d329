"""Deploy timings on the local kind clusters, side by side in one run.

    .venv/bin/python benchmarks/deploy_bench.py --config mco.local.yaml [--rounds 2]

Per round, with two models A and B (images built and loaded into the clusters beforehand,
so every timed step is apply + rollout watch + record):

  single-cloud deploys   B to aws alone, then gcp alone, then azure alone
  three-cloud deploy     A to all three at once
  rollback               all three back to B (recorded manifests, no rebuild)
  no-op redeploy         `mco deploy B` (the real CLI) when every cloud already runs B; if mco's
                         own source changed meanwhile (the image inputs changed, so that deploy
                         is a real release), the no-op is timed as `mco deploy B --image <running>`

and then the roles of A and B swap. It prints medians and the ratios the targets name:
three-cloud / slowest single cloud (target <= 1.3), rollback / three-cloud deploy (<= 1.0),
no-op redeploy seconds (< 5). The history lives in a temporary state directory; the
clusters' ``mco`` namespace is overwritten.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml


def _train(out: Path, strategy: str) -> Any:
    from orchestrator.model.train import TrainSpec, train_bundle

    return train_bundle(TrainSpec(dataset="digits", strategy=strategy), out)


def _cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli.main", *args, "--config", str(config),
                           "--output", "json"], capture_output=True, text=True)


def _current_image(store: Any, cloud: str) -> str:
    cur = store.current(cloud)
    return str(cur.image_ref)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("mco.local.yaml"), help="config with the kind clusters")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args()

    from orchestrator.config import load_config
    from orchestrator.kube.render import overlay_for
    from orchestrator.packaging.build import build_image
    from orchestrator.releases.deployer import CloudTarget, DeploySettings, deploy_release, rollback_release
    from orchestrator.releases.images import ensure_on_kind, local_image
    from orchestrator.releases.lock import DeployLock
    from orchestrator.releases.store import ReleaseStore

    base_cfg = load_config(args.config, required=True)
    clouds = {n: c for n, c in base_cfg.clouds.items() if c.cluster is not None and c.cluster.kind_cluster}
    if len(clouds) < 2:
        print(f"need at least two kind clusters in {args.config}; run `mco local up clusters`", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="mco-deploy-bench-"))
    raw = yaml.safe_load(args.config.read_text()) or {}
    raw["project"] = {"name": "deploy-bench", "state_dir": str(work / "state")}
    raw["deploy"] = {"replicas": args.replicas, "rollout_timeout_s": 300}
    cfg_path = work / "mco.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))

    print("setup: training two models, building and loading their images (not timed)", flush=True)
    bundles = {"A": _train(work / "a", "multinomial"), "B": _train(work / "b", "ovr")}
    images = {}
    for key, bundle in bundles.items():
        built = build_image(bundle.path, packaging=base_cfg.packaging)
        img = local_image(built.image_id)
        images[key] = type(img)(name=built.image, image_id=img.image_id, bundle_digest=img.bundle_digest)
        errors = ensure_on_kind(images[key], {n: c.cluster.kind_cluster for n, c in clouds.items()})
        if errors:
            print(f"could not load images: {errors}", file=sys.stderr)
            return 1

    settings = DeploySettings(replicas=args.replicas, rollout_timeout_s=300, run_as_user=base_cfg.packaging.uid)
    store = ReleaseStore(work / "state" / "releases.db", "deploy-bench")
    lock = DeployLock(work / "state", "deploy-bench")

    def targets(key: str, names: list[str]) -> list[CloudTarget]:
        img = images[key]
        return [CloudTarget(n, clouds[n].cluster, overlay_for(clouds[n]), image_ref=img.image_id,
                            image_digest=img.image_id) for n in names]

    def deploy(key: str, names: list[str]) -> float:
        t0 = time.perf_counter()
        load_errors = ensure_on_kind(images[key], {n: clouds[n].cluster.kind_cluster for n in names})
        result = deploy_release(store, lock, targets(key, names), model_digest=bundles[key].digest, settings=settings,
                                failed_before_apply={c: ("ImageLoadFailed", m) for c, m in load_errors.items()})
        elapsed = time.perf_counter() - t0
        if result.release.status != "deployed":
            raise SystemExit(f"deploy of {key} to {names} ended {result.release.status}: {result.summary()}")
        return elapsed

    names = list(clouds)
    # Start from a known state: B everywhere.
    print("setup: B on every cloud", flush=True)
    deploy("B", names)
    single: dict[str, list[float]] = {n: [] for n in names}
    triple: list[float] = []
    rollback: list[float] = []
    noop: list[float] = []
    ratios: list[float] = []
    current, other = "B", "A"
    for rnd in range(args.rounds):
        round_single = {}
        for n in names:
            round_single[n] = deploy(other, [n])
            single[n].append(round_single[n])
            print(f"round {rnd + 1}: single-cloud deploy {n:<6} {round_single[n]:6.1f} s", flush=True)
        t = deploy(current, names)
        triple.append(t)
        ratios.append(t / max(round_single.values()))
        print(f"round {rnd + 1}: three-cloud deploy     {t:6.1f} s", flush=True)
        t0 = time.perf_counter()
        back = rollback_release(store, lock, {n: (clouds[n].cluster, overlay_for(clouds[n])) for n in names}, to=None,
                                settings=settings)
        rollback.append(time.perf_counter() - t0)
        if back.release.status != "deployed":
            raise SystemExit(f"rollback ended {back.release.status}: {back.summary()}")
        print(f"round {rnd + 1}: rollback (3 clouds)    {rollback[-1]:6.1f} s", flush=True)
        # Every cloud now runs `other` again; a real CLI redeploy of it must change nothing. The
        # full command checks whether the image must be rebuilt (build inputs include mco's own
        # source): when the source changed during the run, that redeploy is a real release, so
        # the no-op is then timed with the already-built image (--image), skipping only the check.
        t0 = time.perf_counter()
        proc = _cli("deploy", str(bundles[other].path), config=cfg_path)
        elapsed = time.perf_counter() - t0
        if proc.returncode == 0 and '"unchanged": true' in proc.stdout:
            noop.append(elapsed)
            print(f"round {rnd + 1}: no-op redeploy (CLI)   {noop[-1]:6.1f} s", flush=True)
        else:
            print(f"round {rnd + 1}: mco's source changed during the run: the image was rebuilt ({elapsed:.1f} s)",
                  flush=True)
            running = _current_image(store, names[0])
            t0 = time.perf_counter()
            proc = _cli("deploy", str(bundles[other].path), "--image", running, config=cfg_path)
            elapsed = time.perf_counter() - t0
            if proc.returncode != 0 or '"unchanged": true' not in proc.stdout:
                raise SystemExit(f"no-op redeploy did not come back unchanged:\n{proc.stdout}\n{proc.stderr}")
            noop.append(elapsed)
            print(f"round {rnd + 1}: no-op redeploy (CLI, --image) {noop[-1]:6.1f} s", flush=True)
        # the CLI may have rolled `other` out as a new image: the next round starts from what runs
        images[other] = local_image(_current_image(store, names[0]))
        current, other = other, current
    store.close()

    med = statistics.median
    slowest_single = max(med(v) for v in single.values())
    print()
    print(f"{'measure':<34}{'median s':>10}")
    for n, values in single.items():
        print(f"{'single-cloud deploy ' + n:<34}{med(values):>10.1f}")
    print(f"{'three-cloud deploy':<34}{med(triple):>10.1f}")
    print(f"{'rollback (three clouds)':<34}{med(rollback):>10.1f}")
    print(f"{'no-op redeploy (CLI)':<34}{med(noop):>10.1f}")
    print()
    print(f"three-cloud / slowest single cloud: {med(triple) / slowest_single:.2f}  (per-round median "
          f"{med(ratios):.2f}; target <= 1.3)")
    print(f"rollback / three-cloud deploy:      {med(rollback) / med(triple):.2f}  (target <= 1.0)")
    print(f"no-op redeploy:                     {med(noop):.1f} s  (target < 5 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
