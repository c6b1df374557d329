"""The image's entrypoint: get the model (baked in, or fetched from the cloud's bucket), then serve it.

Environment (set by the image, the manifests or ``docker run -e``):

    MCO_MODEL_SOURCE   baked (default) | fetch
    MCO_MODEL_DIR      where the bundle is (baked) or goes (fetch; must be writable, e.g. a tmpfs)
    MCO_MODEL_DIGEST   sha256:... of the bundle; the image pins it, the server refuses any other
    MCO_STORAGE        fetch mode: JSON ``{"provider": "aws", "storage": {...StorageConfig...}}``
                       (credentials come from the SDK's own chain: IAM role, workload identity...)

Either way the server verifies every sha256 before it reports ready and exits non-zero
(3) on a mismatch, so a tampered or substituted model never serves.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from orchestrator.errors import ConfigError, MCOError

__all__ = ["fetch_model", "main"]

EXIT_REFUSED = 3


def fetch_model(dest: Path, digest: str, storage_json: str | None) -> Path:
    """Pull the bundle named by ``digest`` from the bucket described by ``storage_json`` into ``dest``."""
    if not storage_json:
        raise ConfigError("MCO_MODEL_SOURCE=fetch but MCO_STORAGE is not set",
                          hint='set MCO_STORAGE=\'{"provider": "aws", "storage": {"bucket": ...}}\' '
                               "(the deploy step does this), or build the image with the model baked in")
    try:
        spec = json.loads(storage_json)
        provider = str(spec["provider"])
        from orchestrator.config import StorageConfig

        storage = StorageConfig.model_validate(spec["storage"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"MCO_STORAGE is not valid: {exc}",
                          hint='expected JSON {"provider": "aws|gcp|azure|local", "storage": {"bucket": ...}}') from None
    # The same pull as `mco pull`: every file's sha256 is checked before the bundle appears at dest.
    from orchestrator.artifacts.pull import pull_from_storage

    return pull_from_storage(provider, storage, digest, dest, cloud=spec.get("cloud"))


def main() -> None:
    source = os.environ.get("MCO_MODEL_SOURCE", "baked")
    try:
        if source == "fetch":
            digest = os.environ.get("MCO_MODEL_DIGEST", "")
            if not digest:
                raise ConfigError("MCO_MODEL_SOURCE=fetch needs MCO_MODEL_DIGEST (the bundle to fetch)")
            dest = Path(os.environ.get("MCO_MODEL_DIR", "/tmp/mco-model"))
            print(f"mco model server: fetching bundle {digest[:19]}… into {dest}", file=sys.stderr, flush=True)
            path = fetch_model(dest, digest, os.environ.get("MCO_STORAGE"))
            os.environ["MCO_MODEL_DIR"] = str(path)
        elif source != "baked":
            raise ConfigError(f"MCO_MODEL_SOURCE is '{source}'", hint="use baked or fetch")
    except MCOError as exc:
        print(f"mco model server: refusing to start: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_REFUSED)
    from orchestrator.serving.run import main as serve

    serve()


if __name__ == "__main__":
    main()
