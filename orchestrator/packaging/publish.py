"""Push one image to every configured cloud's registry in parallel.

Which clouds get which image is decided by ``orchestrator.releases.publish`` (``mco push``
and ``mco deploy`` alike); this module does the pushing.

One cloud's failure never stops the others: the result maps each cloud to its
``PushedImage`` or to the ``MCOError`` that says what went wrong there. Each push is
checked afterwards through the registry's own manifest API, by digest.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.config import MCOConfig
from orchestrator.errors import MCOError, ProviderError
from orchestrator.progress import ProgressFn, quiet

__all__ = ["ImagePushes", "configured_registries", "push_image", "split_image_name"]


@dataclass(frozen=True)
class ImagePushes:
    image: str
    results: dict[str, Any]  # cloud -> PushedImage | MCOError

    @property
    def failed(self) -> dict[str, MCOError]:
        return {c: r for c, r in self.results.items() if isinstance(r, MCOError)}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for cloud, result in self.results.items():
            if isinstance(result, MCOError):
                out[cloud] = {"image_error": result.message, "image_error_kind": type(result).__name__,
                              "image_error_hint": result.hint}
            else:
                out[cloud] = result.to_dict()
        return out


def split_image_name(image: str) -> tuple[str, str]:
    """``mco/digits:abc`` -> (``digits``, ``abc``): the registry adds its own host and prefix."""
    repo, _, tag = image.rpartition(":")
    if not repo or "/" in tag:
        raise MCOError(f"'{image}' is not a name:tag image reference", hint="build it with `mco package BUNDLE`")
    return repo.rsplit("/", 1)[-1], tag


def configured_registries(cfg: MCOConfig, clouds: list[str] | None = None) -> dict[str, Any]:
    """``{cloud: OCIRegistry}`` for every cloud (or the chosen ones) that has a registry section."""
    from orchestrator.providers.loader import get_provider

    base_dir = Path(cfg.source).resolve().parent if cfg.source else None
    return {name: get_provider(name, cloud, base_dir=base_dir).container_registry()
            for name, cloud in cfg.clouds.items()
            if cloud.registry is not None and (clouds is None or name in clouds)}


def push_image(image: str, registries: dict[str, Any], *, image_id: str | None = None,
               progress: ProgressFn = quiet, verify: bool = True, repository: str | None = None) -> ImagePushes:
    """Push ``image`` (a local name:tag) to every registry at once; its layers are compressed once.

    ``image_id`` pins exactly which image goes (the tag could move while we push).
    ``repository`` names the repository under each registry's prefix (default: the image's
    own name, ``mco/digits:abc`` -> ``digits``); the router image goes under ``router.image_repository``.
    ``progress`` hears about the export (subject: the image) and each cloud's push (subject: the cloud)."""
    from orchestrator.packaging.engine import docker_client
    from orchestrator.packaging.oci import export_image

    name, tag = split_image_name(image)
    name = repository or name
    client = docker_client(timeout=900)
    try:
        progress(image, "exporting (each new layer is compressed once)…")
        layout = export_image(client, image_id or image)
        progress(image, f"exported {len(layout.layers)} layers")
    finally:
        client.close()
    # In registries the tag also carries the image ID: the same tag always names the same image,
    # so immutable tags (ECR) never refuse a rebuilt image of the same bundle.
    tag = f"{tag}-{layout.image_id.removeprefix('sha256:')[:12]}"

    def one(cloud: str) -> Any:
        registry = registries[cloud]
        try:
            progress(cloud, f"pushing to {registry.host}")
            pushed = registry.push(layout, name, tag, progress=lambda msg: progress(cloud, msg))
            if verify:  # read it back by digest through the registry's own manifest API
                held = registry.manifest_digest(name, pushed.digest)
                if held != pushed.digest:
                    raise ProviderError(f"{cloud}: after the push, {registry.host} does not serve manifest "
                                        f"{pushed.digest[:19]}…", cloud=cloud, hint="see the registry's log")
            what = (f"pushed {pushed.layers_pushed} of {len(layout.layers)} layers" if pushed.layers_pushed
                    else "no layer transferred: the registry already had every layer")
            progress(cloud, f"{what} -> {pushed.ref}")
            return pushed
        except MCOError as exc:
            progress(cloud, f"failed: {exc.message}")
            return exc

    results: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(registries))) as pool:
        futures = {cloud: pool.submit(one, cloud) for cloud in registries}
        for cloud, fut in futures.items():
            results[cloud] = fut.result()
    return ImagePushes(image, results)
