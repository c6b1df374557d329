"""Model image: cold and warm build, image size next to the bundle, push to three registries.

    .venv/bin/python benchmarks/image_bench.py [--bundle DIR] [--rounds 3] [--full-rounds 2] [--cold-builds 1]
                                               [--docker-push]

* Build: a cold build (``nocache``: every layer rebuilt from the host's wheelhouse) and
  warm rebuilds of the unchanged bundle (every layer reused). Targets: warm < 10 s.
* Size: the image (uncompressed, as ``docker images`` shows it and as pushed, gzip)
  next to the model bundle. Target: image < 400 MB.
* Push: three fresh local registries (``RegistryStandIn``, real docker-registry).
  End to end: a never-pushed image (empty blob store: ``export_image`` compresses each layer
  once) pushed to one registry, to all three in parallel, and to all three one after
  another. Target: parallel <= 1.3x single. Then upload only (blobs already compressed),
  each push under a new repository name so every blob really moves.
  ``--docker-push`` also times ``docker push`` (which gzips again per registry) for contrast.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.config import PackagingConfig
from orchestrator.local.base import LocalContext, update_local_config
from orchestrator.local.registries import RegistryStandIn
from orchestrator.model.bundle import load_bundle
from orchestrator.packaging.build import build_image
from orchestrator.packaging.engine import docker_client
from orchestrator.packaging.oci import export_image
from orchestrator.packaging.publish import configured_registries, split_image_name
from orchestrator.packaging.wheelhouse import prepare_wheels


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def bundle_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def push_one(registry: Any, layout: Any, name: str, tag: str) -> float:
    t0 = time.perf_counter()
    pushed = registry.push(layout, name, tag)
    assert pushed.layers_pushed == len(layout.layers), "a benchmark push must move every layer"
    return time.perf_counter() - t0


def docker_push_times(client: Any, image: str, registries: dict[str, Any], name: str) -> tuple[float, float]:
    """Single and parallel `docker push` (fresh repository names), for contrast."""
    _, tag = split_image_name(image)

    def push(reg: Any, repo_name: str) -> None:
        repo = reg.repository_for(repo_name)
        client.api.tag(image, repo, tag)
        creds = reg.credentials()
        for event in client.api.push(repo, tag=tag, stream=True, decode=True,
                                     auth_config=creds.docker_auth() if creds else None):
            if "error" in event:
                raise RuntimeError(event["error"])
        client.api.remove_image(f"{repo}:{tag}", noprune=True)

    regs = list(registries.values())
    t0 = time.perf_counter()
    push(regs[0], f"{name}-dsingle")
    single = time.perf_counter() - t0
    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(regs)) as pool:
        list(pool.map(lambda r: push(r, f"{name}-dpar"), regs))
    return single, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, help="a bundle dir (default: train one)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cold-builds", type=int, default=1)
    ap.add_argument("--full-rounds", type=int, default=2, help="end-to-end pushes per kind (each compresses anew)")
    ap.add_argument("--docker-push", action="store_true", help="also time `docker push` (slow: gzips per registry)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="mco-image-bench-"))
    if args.bundle is None:
        from orchestrator.model.train import TrainSpec, train_bundle

        args.bundle = train_bundle(TrainSpec(dataset="digits", strategy="multinomial"), tmp / "bundle").path
    bundle = load_bundle(args.bundle)
    bsize = bundle_bytes(bundle.path)
    client = docker_client()
    packaging = PackagingConfig()

    # -- build. The wheels (mco's included) are prepared once, so every build sees the same code.
    wheels = prepare_wheels()
    build_image(bundle.path, packaging=packaging, wheels=wheels)
    cold = [build_image(bundle.path, packaging=packaging, no_cache=True,
                        wheels=wheels).build_seconds for _ in range(args.cold_builds)]
    warm_runs = [build_image(bundle.path, packaging=packaging, wheels=wheels)
                 for _ in range(3)]
    warm = [b.build_seconds for b in warm_runs]
    built = warm_runs[-1]
    warm_note = ", ".join(f"{b.cached_steps}/{b.steps}" for b in warm_runs)
    if len({b.image_id for b in warm_runs}) != 1:
        warm_note += " (image IDs differ: something changed between runs)"

    # -- export (compress once) into a warm store, for the upload-only rounds
    layout = export_image(client, built.image)
    t0 = time.perf_counter()
    export_image(client, built.image)
    export_warm = time.perf_counter() - t0
    pushed_bytes = sum(b.size for b in layout.blobs)

    # -- push to three fresh registries
    ctx = LocalContext(state_dir=tmp / "state", config_path=tmp / "mco.local.yaml")
    stand_in = RegistryStandIn()
    singles: list[float] = []
    parallels: list[float] = []
    sequentials: list[float] = []
    docker_single = docker_par = float("nan")
    try:
        update_local_config(ctx.config_path, stand_in.up(ctx))
        from orchestrator.config import load_config

        registries = configured_registries(load_config(ctx.config_path))
        name, tag = split_image_name(built.image)
        first = registries["aws"]
        saved_cache = os.environ.get("MCO_CACHE")

        def full(targets: list[Any], label: str, parallel: bool) -> float:
            """A never-pushed image, end to end: export + compress into an empty store, then upload."""
            os.environ["MCO_CACHE"] = str(tmp / f"cache-{label}")
            try:
                t0 = time.perf_counter()
                fresh = export_image(client, built.image)
                if parallel:
                    with ThreadPoolExecutor(len(targets)) as pool:
                        list(pool.map(lambda r: push_one(r, fresh, f"{name}-{label}", tag), targets))
                else:
                    for reg in targets:
                        push_one(reg, fresh, f"{name}-{label}", tag)
                return time.perf_counter() - t0
            finally:
                if saved_cache is None:
                    os.environ.pop("MCO_CACHE", None)
                else:
                    os.environ["MCO_CACHE"] = saved_cache
                subprocess.run(["rm", "-rf", str(tmp / f"cache-{label}")], check=False)

        kinds = {"single": ([first], False), "parallel": (list(registries.values()), True),
                 "sequential": (list(registries.values()), False)}
        full_times: dict[str, list[float]] = {k: [] for k in kinds}
        for i in range(args.full_rounds):
            order = list(kinds)
            for kind in order[i % 3:] + order[: i % 3]:
                targets, par = kinds[kind]
                full_times[kind].append(full(targets, f"full{i}-{kind}", par))

        for i in range(args.rounds):
            def single(i: int = i) -> None:
                singles.append(push_one(first, layout, f"{name}-r{i}-single", tag))

            def parallel(i: int = i) -> None:
                t0 = time.perf_counter()
                with ThreadPoolExecutor(len(registries)) as pool:
                    list(pool.map(lambda r: push_one(r, layout, f"{name}-r{i}-par", tag), registries.values()))
                parallels.append(time.perf_counter() - t0)

            def sequential(i: int = i) -> None:
                t0 = time.perf_counter()
                for reg in registries.values():
                    push_one(reg, layout, f"{name}-r{i}-seq", tag)
                sequentials.append(time.perf_counter() - t0)

            order = [single, parallel, sequential]
            for step in order[i % 3:] + order[: i % 3]:  # rotate, so drift hits each kind alike
                step()
        if args.docker_push:
            docker_single, docker_par = docker_push_times(client, built.image, registries, f"{name}-docker")
    finally:
        stand_in.down(ctx)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)

    mb = 1e6
    s, p, q = med(singles), med(parallels), med(sequentials)
    print("\n== image build ==")
    print(f"cold build (no layer cache, wheels cached)   median {med(cold):7.2f} s   runs {cold}")
    print(f"warm rebuild (unchanged bundle)              median {med(warm):7.2f} s   runs {warm}"
          f"   steps cached {warm_note}"
          f"   target < 10 s: {'met' if med(warm) < 10 else 'MISSED'}")
    print(f"cold / warm                                  {med(cold) / med(warm):7.1f}x")
    print("\n== size ==")
    print(f"model bundle                                 {bsize / mb:9.2f} MB")
    print(f"image (uncompressed)                         {built.size_bytes / mb:9.2f} MB"
          f"   target < 400 MB: {'met' if built.size_bytes < 400e6 else 'MISSED'}")
    print(f"image as pushed (gzip layers + config)       {pushed_bytes / mb:9.2f} MB")
    print(f"image / bundle                               {built.size_bytes / bsize:9.0f}x")
    fs, fp, fq = (med(full_times[k]) for k in ("single", "parallel", "sequential"))
    print("\n== push a never-pushed image to 3 local registries (export + compress once, then upload) ==")
    print(f"single registry                              median {fs:7.2f} s   runs {[round(x, 2) for x in full_times['single']]}")
    print(f"three in parallel                            median {fp:7.2f} s   runs {[round(x, 2) for x in full_times['parallel']]}")
    print(f"three one after another                      median {fq:7.2f} s   runs {[round(x, 2) for x in full_times['sequential']]}")
    print(f"parallel / single                            {fp / fs:7.2f}x   target <= 1.3x: {'met' if fp / fs <= 1.3 else 'MISSED'}")
    print(f"sequential / parallel                        {fq / fp:7.2f}x")
    print("\n== upload only (blobs already compressed; fresh repository per push, so every blob moves) ==")
    print(f"single registry                              median {s:7.2f} s   runs {[round(x, 2) for x in singles]}")
    print(f"three in parallel                            median {p:7.2f} s   runs {[round(x, 2) for x in parallels]}")
    print(f"three one after another                      median {q:7.2f} s   runs {[round(x, 2) for x in sequentials]}")
    print(f"parallel / single                            {p / s:7.2f}x   (2 shared cores: three registries hash and write at once)")
    print(f"sequential / parallel                        {q / p:7.2f}x")
    print(f"export of an already exported image          {export_warm:7.3f} s")
    if args.docker_push:
        print(f"docker push: single {docker_single:.2f} s, three in parallel {docker_par:.2f} s, "
              f"ratio {docker_par / docker_single:.2f}x (gzips every layer again per registry)")


if __name__ == "__main__":
    main()
