"""Get each cloud's cluster an image it can run, named by digest.

* The image is built by ``mco package`` (``orchestrator.packaging.build``) or given as an
  existing local image.
* A kind cluster gets it with ``kind load docker-image`` (``orchestrator.local.clusters``).
  ``kind load`` goes through ``docker save``, which does not keep registry digests, so
  the manifests reference the image by its ID, ``sha256:<config digest>``: content-addressed,
  kept by ``docker save``, and resolved by the node's containerd without any registry. A
  load is skipped when the node already has that ID, so a no-op redeploy stays fast.
* A cluster that pulls from a registry gets ``REGISTRY/REPO@sha256:<manifest digest>``,
  from ``mco push``.
"""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from orchestrator.errors import ClusterError, ConfigError, MCOError, NotFound

__all__ = ["LocalImage", "ensure_on_kind", "image_on_kind_node", "local_image", "resolve_pushed_image"]


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


def ensure_on_kind(image: LocalImage, kind_clusters: dict[str, str],
                   progress: Callable[[str, str], None] = lambda c, m: None) -> dict[str, str]:
    """``kind load`` the image into each ``{cloud: kind cluster}`` that lacks it, in parallel.

    Returns ``{cloud: error}`` for the clouds that could not get it: one broken cluster must
    not stop the deploy to the others (the release records that cloud as failed).
    """
    from orchestrator.local.base import CLOUDS, LocalContext
    from orchestrator.local.clusters import ClusterStandIn, Kind, cluster_name, load_image

    if not kind_clusters:
        return {}

    def one(cloud: str, cluster: str) -> None:
        if image_on_kind_node(cluster, image.image_id):
            progress(cloud, "image already on the node")
            return
        progress(cloud, f"kind load docker-image {image.name}")
        if cloud in CLOUDS and cluster_name(cloud) == cluster:
            load_image(image.name, [cloud])
        else:  # a kind cluster under another name than `mco local up` gives it
            Kind(LocalContext().dir_for(ClusterStandIn.name)).load_image(cluster, image.name)
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


def resolve_pushed_image(push_result: dict[str, Any], cloud: str) -> tuple[str, str]:
    """``(image_ref, image_digest)`` for a cloud from a push result ``{cloud: {"image": ..., "image_digest": ...}}``."""
    entry = push_result.get(cloud) or {}
    digest = entry.get("image_digest")
    repo = entry.get("image_repository") or entry.get("repository") or entry.get("image")
    if not digest or not repo:
        raise ConfigError(f"the push did not report an image digest for {cloud}",
                          hint="run `mco push BUNDLE` and check its output")
    repo = str(repo).split("@")[0]
    last = repo.rsplit("/", 1)[-1]
    if ":" in last:  # drop a tag: the digest names the image
        repo = repo[: len(repo) - len(last)] + last.split(":")[0]
    return f"{repo}@{digest}", str(digest)
