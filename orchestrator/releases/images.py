"""Get each cloud's cluster an image it can run, named by digest.

* The image is built by ``mco package`` (``orchestrator.packaging.build``) or given as an
  existing local image.
* A kind cluster gets it with ``kind load docker-image`` (``orchestrator.kube.kind``).
  ``kind load`` goes through ``docker save``, which does not keep registry digests, so
  the manifests reference the image by its ID, ``sha256:<config digest>``: content-addressed,
  kept by ``docker save``, and resolved by the node's containerd without any registry. A
  load is skipped when the node already has that ID, so a no-op redeploy stays fast. The
  load goes under a name made of the ID (``pin_name``), so no other load can take the
  name away and let containerd drop the image.
* A cluster that pulls from a registry gets ``REGISTRY/REPO@sha256:<manifest digest>``,
  from ``mco push``.
"""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import ClusterError, MCOError, NotFound
from orchestrator.progress import ProgressFn, quiet

if TYPE_CHECKING:
    from orchestrator.config import MCOConfig, PackagingConfig
    from orchestrator.model.bundle import Bundle

__all__ = ["LocalImage", "ensure_on_kind", "image_for_bundle", "image_on_kind_node", "local_image", "pin_name"]


@dataclass(frozen=True)
class LocalImage:
    name: str          # how docker knows it (name:tag or the ID)
    image_id: str      # sha256:<config digest>
    bundle_digest: str | None  # from the image label mco writes at build time


def local_image(ref: str) -> LocalImage:
    """Look up a local image by name or ID."""
    from orchestrator.packaging.build import LABEL_BUNDLE_DIGEST
    from orchestrator.packaging.engine import docker_client

    client = docker_client(timeout=60)
    try:
        from docker.errors import ImageNotFound

        try:
            image = client.images.get(ref)
        except ImageNotFound as exc:
            raise NotFound(f"there is no local image '{ref}'",
                           hint="build one with `mco package BUNDLE`, or check `docker images`") from exc
        labels = image.labels or {}
        return LocalImage(name=ref, image_id=str(image.id), bundle_digest=labels.get(LABEL_BUNDLE_DIGEST))
    finally:
        client.close()


def image_on_kind_node(kind_cluster: str, image_id: str) -> bool:
    """Whether the kind node's containerd already holds this image ID."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        proc = subprocess.run([docker, "exec", f"{kind_cluster}-control-plane", "crictl", "inspecti", image_id],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


PIN_REPOSITORY = "mco-kind/image"


def pin_name(image: LocalImage) -> str:
    """A local name bound to this image ID alone: ``mco-kind/image:<64 hex of the ID>``.

    ``kind load`` imports an image under its names. A name:tag such as ``mco/digits:<bundle>``
    can later be re-pointed at another build (same bundle, different mco version) by
    another load, and containerd then drops the image it no longer names. A tag made of the
    image ID itself never moves, so the node keeps the image the release references.
    """
    from orchestrator.packaging.engine import docker_client

    tag = image.image_id.removeprefix("sha256:")
    name = f"{PIN_REPOSITORY}:{tag}"
    client = docker_client(timeout=60)
    try:
        client.images.get(image.image_id).tag(PIN_REPOSITORY, tag)
    except Exception as exc:  # docker SDK errors: name the image and the engine's answer
        raise ClusterError(f"cannot tag {image.image_id[:19]}… as {name}: {exc}",
                           hint="check the image exists: `docker image inspect ID`") from exc
    finally:
        client.close()
    return name


def ensure_on_kind(image: LocalImage, kind_clusters: dict[str, str],
                   progress: ProgressFn = quiet) -> dict[str, str]:
    """``kind load`` the image into each ``{cloud: kind cluster}`` that lacks it, in parallel.

    Returns ``{cloud: error}`` for the clouds that could not get it: one broken cluster must
    not stop the deploy to the others (the release records that cloud as failed).
    """
    from orchestrator.kube.kind import load_image

    if not kind_clusters:
        return {}

    pinned = pin_name(image)

    def one(cloud: str, cluster: str) -> None:
        if image_on_kind_node(cluster, image.image_id):
            progress(cloud, "image already on the node")
            return
        progress(cloud, f"kind load docker-image {pinned}")
        load_image(pinned, [cluster])
        if not image_on_kind_node(cluster, image.image_id):
            raise ClusterError(f"{cloud}: after `kind load`, the node of {cluster} still lacks image {image.image_id[:19]}…",
                               hint=f"`docker exec {cluster}-control-plane crictl images`")
        progress(cloud, "image loaded")

    errors: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=len(kind_clusters)) as pool:
        futures = {c: pool.submit(one, c, k) for c, k in kind_clusters.items()}
        for cloud, fut in futures.items():
            try:
                fut.result()
            except MCOError as exc:
                errors[cloud] = exc.message
                progress(cloud, "failed: image not loaded")
    return errors


# ---------------------------------------------------------------- build cache
#
# `mco package` rebuilds through the Docker engine every time (fully cached layers, but the
# whole context, wheels included, is sent again: seconds). A redeploy of an unchanged model
# must not pay that, so deploy remembers which image ID each build input produced: the
# bundle digest, the mco wheel and dependency wheelhouse (both named by content hash), the
# packaging config and the base image's ID. Same inputs and the image still exists locally:
# the image is reused without a build.


def build_key(bundle_digest: str, packaging: PackagingConfig) -> str | None:
    """A digest of everything the image is built from, or None when it cannot be computed."""
    import hashlib
    import json

    from orchestrator.packaging.engine import docker_client
    from orchestrator.packaging.wheelhouse import prepare_wheels

    try:
        wheels = prepare_wheels(fetch_extras=packaging.fetch_extras if packaging.model_source == "fetch" else ())
        client = docker_client(timeout=60)
        try:
            base_id = client.images.get(packaging.base_image).id
        finally:
            client.close()
    except Exception:  # any doubt means "build it": the build itself reports problems properly
        return None
    inputs = {"bundle": bundle_digest, "mco_wheel": str(wheels.mco_wheel), "deps": str(wheels.deps_dir),
              "packaging": packaging.model_dump(mode="json"), "base": base_id}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def cached_image(state_dir: Path, key: str | None) -> LocalImage | None:
    """The image an earlier deploy built from the same inputs, if docker still has it."""
    import json

    if key is None:
        return None
    path = Path(state_dir) / "image-builds.json"
    try:
        entry = json.loads(path.read_text()).get(key)
    except (OSError, ValueError):
        return None
    if not entry:
        return None
    try:
        found = local_image(entry["image_id"])
    except MCOError:
        return None
    return LocalImage(name=entry.get("name", found.image_id), image_id=found.image_id, bundle_digest=found.bundle_digest)


def image_for_bundle(cfg: MCOConfig, bundle: Bundle, *, progress: ProgressFn = quiet) -> LocalImage:
    """The image that serves ``bundle``: the one an earlier build made from the same inputs,
    else a new build (remembered for next time)."""
    from orchestrator.packaging.build import build_image
    from orchestrator.releases.store import state_dir_for

    key = build_key(bundle.digest, cfg.packaging)
    image = cached_image(state_dir_for(cfg), key)
    if image is None:
        built = build_image(bundle.path, packaging=cfg.packaging, progress=progress)
        found = local_image(built.image_id)
        image = LocalImage(name=built.image, image_id=found.image_id, bundle_digest=found.bundle_digest)
        remember_image(state_dir_for(cfg), key, image)
    return image


def remember_image(state_dir: Path, key: str | None, image: LocalImage) -> None:
    import json
    import os
    import tempfile

    if key is None:
        return
    path = Path(state_dir) / "image-builds.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[key] = {"image_id": image.image_id, "name": image.name}
    data = dict(list(data.items())[-50:])  # keep the file small
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".image-builds.")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)
