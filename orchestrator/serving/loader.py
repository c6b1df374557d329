"""Load a bundle for serving: verify every digest first, then build the ONNX session.

``expected_digest`` pins the bundle a deployment asked for (from the release, via the
``MCO_MODEL_DIGEST`` env var in the image): a valid bundle that is not the requested
one is refused too.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import IntegrityError
from orchestrator.model.bundle import Bundle, load_bundle
from orchestrator.model.export import OnnxModel

__all__ = ["load_verified"]


def load_verified(path: str | Path, *, expected_digest: str | None = None, threads: int = 1) -> tuple[Bundle, OnnxModel]:
    bundle = load_bundle(path, verify=True)
    if expected_digest:
        want = expected_digest.removeprefix("sha256:")
        if bundle.digest != want:
            raise IntegrityError(
                f"bundle at {path} has digest {bundle.digest[:12]}…, but {want[:12]}… was requested",
                hint="the image or volume holds a different model than the release names",
            )
    # Read the bytes once and hash them again: the file could change between check and load.
    from orchestrator.model.digests import sha256_bytes

    data = bundle.model_path.read_bytes()
    if sha256_bytes(data) != bundle.model_sha256:
        raise IntegrityError(f"{bundle.model_path} changed while it was being loaded",
                             hint="refusing to serve an unverified model")
    return bundle, OnnxModel(data, threads=threads)
