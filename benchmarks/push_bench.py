"""Bundle push throughput, mco vs the bare SDK, against the three local emulators, in one run.

    .venv/bin/python benchmarks/push_bench.py [--sizes 64,512] [--runs 3] [--clouds aws,gcp,azure]

It starts its own emulators (moto, fake-gcs-server, Azurite, as `mco local up storage`
does) under a temporary directory and stops them at the end. For each bundle size
(the digits bundle plus one random file, so the bundle is that many MiB) and each cloud,
runs alternate:

  mco   ``push_bundle`` (what `mco push` runs) of the whole bundle to a fresh prefix: stat,
        upload, cloud-checksum verification, sha256 check against the card, manifest,
        index; the digests are computed in the same run (nothing cached between runs)
  bare  the SDK's own upload call for the same files, defaults as documented by each SDK
        (boto3 ``upload_file``; google-cloud-storage ``upload_from_filename``;
        azure-storage-blob ``upload_blob`` with the same ``max_concurrency`` mco uses),
        from a fresh client, as mco's push makes one

and prints median seconds, MiB/s and mco/bare throughput (target >= 0.8). Then it times a
re-push of the unchanged largest bundle to all three clouds at once, in-process and as the
real CLI (`mco push --output json`, a fresh Python process); target < 2 s. Objects are
deleted after each run (moto keeps them in memory).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]


def _make_bundle(base: Path, out: Path, mib: int) -> Any:
    import shutil

    from orchestrator.model.bundle import load_bundle, write_card

    shutil.copytree(base, out)
    have = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    with open(out / "data" / "weights.bin", "wb") as fh:
        left = max(mib * MiB - have, 0)
        while left:
            chunk = os.urandom(min(left, 16 * MiB))
            fh.write(chunk)
            left -= len(chunk)
    write_card(out, json.loads((out / "card.json").read_text()))
    return load_bundle(out)


def _bare_uploader(cloud: str, storage: Any) -> tuple[Callable[[str, Path], None], Callable[[str], None]]:
    """(upload(key, path), delete_prefix(prefix)) with the SDK called directly."""
    if cloud == "aws":
        import boto3

        from orchestrator.providers.aws import EMULATOR_ACCESS_KEY_ID, EMULATOR_SECRET_ACCESS_KEY

        s3 = boto3.client("s3", endpoint_url=storage.endpoint, region_name="us-east-1",
                          aws_access_key_id=EMULATOR_ACCESS_KEY_ID, aws_secret_access_key=EMULATOR_SECRET_ACCESS_KEY)

        def up(key: str, path: Path) -> None:
            s3.upload_file(str(path), storage.bucket, key)

        def rm(prefix: str) -> None:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=storage.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    s3.delete_object(Bucket=storage.bucket, Key=obj["Key"])
        return up, rm
    if cloud == "gcp":
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage as gcs

        client = gcs.Client(project="bench", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": storage.endpoint})
        bucket = client.bucket(storage.bucket)

        def up(key: str, path: Path) -> None:
            bucket.blob(key).upload_from_filename(str(path))

        def rm(prefix: str) -> None:
            for blob in client.list_blobs(storage.bucket, prefix=prefix):
                blob.delete()
        return up, rm
    from azure.storage.blob import BlobServiceClient

    from orchestrator.providers import azure as az

    service = BlobServiceClient(account_url=storage.endpoint,
                                credential={"account_name": az.AZURITE_ACCOUNT, "account_key": az._AZURITE_KEY})
    container = service.get_container_client(storage.bucket)

    def up(key: str, path: Path) -> None:
        with open(path, "rb") as fh:
            container.get_blob_client(key).upload_blob(fh, overwrite=True, max_concurrency=az.MAX_CONCURRENCY)

    def rm(prefix: str) -> None:
        for blob in container.list_blobs(name_starts_with=prefix):
            container.delete_blob(blob.name)
    return up, rm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64,512", help="bundle sizes in MiB (comma-separated)")
    parser.add_argument("--runs", type=int, default=3, help="runs per size, cloud and side")
    parser.add_argument("--clouds", default="aws,gcp,azure")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    clouds = args.clouds.split(",")

    from orchestrator.artifacts.push import bundle_files, push_bundle
    from orchestrator.config import load_config, parse_config
    from orchestrator.local.base import LocalContext, update_local_config
    from orchestrator.local.storage import StorageStandIn
    from orchestrator.model.train import TrainSpec, train_bundle

    work = Path(tempfile.mkdtemp(prefix="mco-push-bench-"))
    ctx = LocalContext(state_dir=work / "local", config_path=work / "mco.local.yaml")
    stand_in = StorageStandIn()
    rows: list[dict[str, Any]] = []
    try:
        print("starting emulators…", flush=True)
        update_local_config(ctx.config_path, stand_in.up(ctx))
        base_cfg = load_config(ctx.config_path)
        base = train_bundle(TrainSpec(), work / "base").path
        bundles = {mib: _make_bundle(base, work / f"b{mib}", mib) for mib in sizes}

        def cfg_with_prefix(prefix: str) -> Any:
            data = {"clouds": {c: base_cfg.clouds[c].model_dump(exclude_none=True) for c in clouds}}
            for c in clouds:
                data["clouds"][c]["storage"]["prefix"] = prefix
            return parse_config(data)

        for mib, bundle in bundles.items():
            files = bundle_files(bundle)
            total = sum(f.size for f in files)
            for cloud in clouds:
                times: dict[str, list[float]] = {"mco": [], "bare": []}
                for run in range(args.runs):
                    prefix = f"bench-{mib}-{run}"
                    t = time.perf_counter()
                    result = push_bundle(cfg_with_prefix(prefix), bundle, [cloud])[cloud]
                    times["mco"].append(time.perf_counter() - t)
                    if not result.ok:
                        raise SystemExit(f"mco push failed: {result.error}")
                    t = time.perf_counter()
                    # A fresh client per run, as each `mco push` makes one: both sides pay for it.
                    up, rm = _bare_uploader(cloud, base_cfg.clouds[cloud].storage)
                    for f in files:
                        up(f"bare-{mib}-{run}/{f.rel}", f.path)
                    times["bare"].append(time.perf_counter() - t)
                    rm(prefix + "/")
                    rm(f"bare-{mib}-{run}/")
                med = {side: statistics.median(v) for side, v in times.items()}
                rows.append({"size_mib": mib, "cloud": cloud, "bytes": total,
                             "mco_s": med["mco"], "bare_s": med["bare"],
                             "mco_mib_s": total / MiB / med["mco"], "bare_mib_s": total / MiB / med["bare"],
                             "ratio": med["bare"] / med["mco"]})
                r = rows[-1]
                print(f"  {mib:>4} MiB {cloud:<6} mco {r['mco_s']:6.2f} s ({r['mco_mib_s']:6.1f} MiB/s)   "
                      f"bare {r['bare_s']:6.2f} s ({r['bare_mib_s']:6.1f} MiB/s)   ratio {r['ratio']:.2f}", flush=True)

        # Re-push of the unchanged largest bundle to every cloud at once.
        big = bundles[max(sizes)]
        cfg = cfg_with_prefix("bench-repush")
        assert all(r.ok for r in push_bundle(cfg, big).values())
        repush: list[float] = []
        for _ in range(3):
            t = time.perf_counter()
            again = push_bundle(cfg, big)
            repush.append(time.perf_counter() - t)
            assert all(r.ok and r.bytes_uploaded == 0 for r in again.values())
        cfg_file = work / "repush.yaml"
        import yaml

        cfg_file.write_text(yaml.safe_dump({"clouds": {c: cfg.clouds[c].model_dump(exclude_none=True, mode="json")
                                                       for c in clouds}}))
        cli: list[float] = []
        for _ in range(3):
            t = time.perf_counter()
            proc = subprocess.run([str(Path(sys.executable).parent / "mco"), "push", str(big.path), "--config",
                                   str(cfg_file), "--output", "json"], capture_output=True, text=True, timeout=120)
            cli.append(time.perf_counter() - t)
            data = json.loads(proc.stdout)
            assert proc.returncode == 0 and all(data["clouds"][c]["bytes_uploaded"] == 0 for c in clouds), proc.stderr
    finally:
        stand_in.down(ctx)
        import shutil

        shutil.rmtree(work, ignore_errors=True)

    print()
    print("| bundle | cloud | mco s | bare SDK s | mco MiB/s | bare MiB/s | mco/bare throughput |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size_mib']} MiB | {r['cloud']} | {r['mco_s']:.2f} | {r['bare_s']:.2f} | {r['mco_mib_s']:.1f} | "
              f"{r['bare_mib_s']:.1f} | {r['ratio']:.2f} |")
    worst = min(r["ratio"] for r in rows)
    print()
    print(f"worst mco/bare throughput ratio: {worst:.2f} (target >= 0.8: {'met' if worst >= 0.8 else 'MISSED'})")
    print(f"re-push of the unchanged {max(sizes)} MiB bundle to {len(clouds)} clouds: in-process median "
          f"{statistics.median(repush):.2f} s, `mco push` CLI median {statistics.median(cli):.2f} s "
          f"(target < 2 s: {'met' if statistics.median(cli) < 2 else 'MISSED'})")
    print(f"machine load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
