"""One publish for ``mco push`` and ``mco deploy``: the bundle to each chosen cloud's object
store, the image to each chosen cloud's registry, all clouds at once.

The rules, the same for both commands:

* The clouds are the ones named, or every cloud with storage or a registry. A named cloud
  with neither is a config error. With nothing configured at all, the bundle goes to the
  project's local store (``orchestrator.artifacts.push``).
* The bundle goes to every chosen cloud with storage; the image to every chosen cloud with a
  registry, whatever happened to that cloud's bundle: each artifact reports its own result.
* The image is the one given, else the one built from the bundle (reused when an earlier
  build had the same inputs, ``orchestrator.releases.images``). An image known only by its
  ID has no name to push under: registries are skipped, with a note.
* Everything is content-addressed and verified: pushing what a cloud has transfers nothing.
  One cloud's failure never stops the others.

The upload work is done by ``orchestrator.artifacts.push`` (bundles) and
``orchestrator.packaging.publish`` (images); this module only decides what goes where.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from orchestrator.artifacts.push import CloudPush, PushProgress
from orchestrator.config import MCOConfig
from orchestrator.errors import ConfigError, MCOError
from orchestrator.model.bundle import Bundle
from orchestrator.packaging.publish import ImagePushes
from orchestrator.progress import ProgressFn, quiet
from orchestrator.releases.images import LocalImage

__all__ = ["Published", "destinations", "publish"]


@dataclass
class Published:
    bundles: dict[str, CloudPush] = field(default_factory=dict)   # cloud -> bundle push result
    images: ImagePushes | None = None                             # cloud -> PushedImage | MCOError
    notes: list[str] = field(default_factory=list)

    def failed(self) -> dict[str, str]:
        """``{cloud: what failed}``, in words, for a release record."""
        out: dict[str, str] = {}
        for cloud, result in self.bundles.items():
            if not result.ok:
                out[cloud] = f"bundle push failed: {result.error.message if result.error else 'unknown error'}"
        for cloud, exc in (self.images.failed if self.images else {}).items():
            out.setdefault(cloud, f"image push failed: {exc.message}")
        return out

    def pushed_images(self) -> dict[str, Any]:
        """``{cloud: PushedImage}`` (``.ref`` is REPO@sha256:…, ``.digest`` the manifest digest)."""
        if self.images is None:
            return {}
        return {c: r for c, r in self.images.results.items() if not isinstance(r, MCOError)}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Per cloud, the bundle's keys and the image's keys merged (what ``mco push`` prints)."""
        clouds = {name: r.to_dict() for name, r in self.bundles.items()}
        for name, entry in (self.images.to_dict() if self.images else {}).items():
            clouds.setdefault(name, {}).update(entry)
        return clouds


def destinations(cfg: MCOConfig, clouds: list[str] | None = None) -> list[str]:
    """The chosen clouds (default: all) that have storage or a registry to publish to."""
    names = list(cfg.clouds) if clouds is None else clouds
    return [n for n in names if n in cfg.clouds and (cfg.clouds[n].storage is not None
                                                     or cfg.clouds[n].registry is not None)]


def publish(cfg: MCOConfig, bundle: Bundle, clouds: list[str] | None = None, *, image: LocalImage | None = None,
            bundle_progress: PushProgress | None = None, progress: ProgressFn = quiet) -> Published:
    """Publish ``bundle`` (and its image) to ``clouds`` by the rules above."""
    from orchestrator.artifacts.push import push_bundle

    if clouds is not None:
        for name in clouds:
            cloud = cfg.cloud(name)  # raises for an unknown cloud, naming the configured ones
            if cloud.storage is None and cloud.registry is None:
                raise ConfigError(f"cloud '{name}' has neither storage nor a registry in {cfg.source or 'the config'}",
                                  hint=f"add clouds.{name}.storage or clouds.{name}.registry, or leave it out")
    names = destinations(cfg, clouds)
    out = Published()
    with_storage = [n for n in names if cfg.clouds[n].storage is not None]
    with_registry = [n for n in names if cfg.clouds[n].registry is not None]
    bundle_clouds: list[str] | None = with_storage
    if not with_storage and clouds is None and not names:
        bundle_clouds = None  # nothing configured: the project's local store, or the error that says so
    if bundle_clouds is None or bundle_clouds:
        # A progress that is also a context manager is shown only while the bundle uploads.
        shown = bundle_progress if isinstance(bundle_progress, AbstractContextManager) else nullcontext()
        with shown:
            out.bundles = push_bundle(cfg, bundle, bundle_clouds, progress=bundle_progress)
    if with_registry:
        out.images = _publish_image(cfg, bundle, with_registry, image, progress, out.notes)
    return out


def _publish_image(cfg: MCOConfig, bundle: Bundle, clouds: list[str], image: LocalImage | None,
                   progress: ProgressFn, notes: list[str]) -> ImagePushes | None:
    from orchestrator.packaging.publish import configured_registries, push_image
    from orchestrator.releases.images import image_for_bundle

    if image is None:
        try:
            image = image_for_bundle(cfg, bundle, progress=progress)
        except MCOError as exc:  # no image for anyone; the bundle pushes still report their own results
            return ImagePushes(str(bundle.path), dict.fromkeys(clouds, exc))
    if image.name.startswith("sha256:") or ":" not in image.name.rsplit("/", 1)[-1]:
        notes.append(f"{image.name} has no name:tag, so it is not pushed to registries")
        return None
    return push_image(image.name, configured_registries(cfg, clouds), image_id=image.image_id,
                      progress=progress)
