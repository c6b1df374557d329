"""``build_router_image``: the router as an image, built offline like the model's.

Only mco's core and the ``router`` extra go in (``wheelhouse.prepare_router_wheels``):
no scikit-learn, onnxruntime or cloud SDK. The tag is derived from the mco wheel (the
code is all that changes), and a release records the image by its id/digest per cloud.
The config comes from a mounted file (``ROUTER_CONFIG``) and the admin token from the
environment (a Secret), never from the image.

**Cached by content.** Every ``mco deploy`` with ``router.in_cluster`` asks for the image,
so a build is skipped when nothing it is made of changed: the image carries
``dev.mco.router.key``, a sha256 of its inputs (the mco wheel and the dependency
wheelhouse, both named by a hash of their content, the rendered Dockerfile and the base
image's ID). An image under the same tag whose key matches is reused as it is (no build,
no context sent to the engine); any other is built.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from orchestrator import __version__
from orchestrator.config import PackagingConfig
from orchestrator.packaging.build import LABEL_MCO_VERSION, _check_base_image, _link_or_copy, _run_build
from orchestrator.packaging.dockerfile import CTX_DEPS, CTX_MCO, RouterDockerfileSpec, render_router_dockerfile
from orchestrator.packaging.wheelhouse import Wheels
from orchestrator.progress import ProgressFn, quiet

__all__ = ["LABEL_ROUTER", "LABEL_ROUTER_KEY", "BuiltRouterImage", "build_router_image", "router_build_key",
           "router_image_name"]

LABEL_ROUTER = "dev.mco.router"
LABEL_ROUTER_KEY = "dev.mco.router.key"


@dataclass(frozen=True)
class BuiltRouterImage:
    image: str
    image_id: str
    size_bytes: int
    build_seconds: float
    requirements: tuple[str, ...]
    cached: bool = False  # an image with the same inputs was there: nothing was built


def router_image_name(packaging: PackagingConfig, wheels: Wheels) -> str:
    # the mco wheel's cache directory is keyed by a hash of the source: the same code, the same tag
    return f"{packaging.image_prefix}/router:{wheels.mco_wheel.parent.name.removeprefix('mco-wheel-')}"


def router_build_key(dockerfile: str, wheels: Wheels, base_image_id: str) -> str:
    """A sha256 of everything the router image is made of (the wheels are named by content)."""
    inputs = {"dockerfile": dockerfile, "mco_wheel": wheels.mco_wheel.parent.name + "/" + wheels.mco_wheel.name,
              "deps": wheels.deps_dir.name, "base": base_image_id}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _existing(client: Any, name: str, key: str) -> Any | None:
    from docker.errors import ImageNotFound

    try:
        image = client.images.get(name)
    except ImageNotFound:
        return None
    return image if (image.labels or {}).get(LABEL_ROUTER_KEY) == key else None


def build_router_image(*, packaging: PackagingConfig | None = None, client: Any = None,
                       progress: ProgressFn = quiet, wheels: Wheels | None = None,
                       no_cache: bool = False) -> BuiltRouterImage:
    """The router image for this code and config: reused when its key matches, else built."""
    from orchestrator.packaging.engine import docker_client
    from orchestrator.packaging.wheelhouse import prepare_router_wheels

    packaging = packaging or PackagingConfig()
    started = time.perf_counter()
    client = client or docker_client()
    _check_base_image(client, packaging.base_image)
    base_id = str(client.images.get(packaging.base_image).id)
    wheels = wheels or prepare_router_wheels()
    name = router_image_name(packaging, wheels)
    labels = {"org.opencontainers.image.title": "mco-router",
              "org.opencontainers.image.version": __version__,
              "org.opencontainers.image.base.name": packaging.base_image,
              LABEL_MCO_VERSION: __version__, LABEL_ROUTER: "true"}
    spec = RouterDockerfileSpec(base_image=packaging.base_image, python=packaging.python, uid=packaging.uid,
                                mco_wheel_name=wheels.mco_wheel.name, mco_version=__version__, labels=labels)
    key = router_build_key(render_router_dockerfile(spec), wheels, base_id)
    found = None if no_cache else _existing(client, name, key)
    if found is not None:
        progress(name, "unchanged inputs: the image is reused")
        return BuiltRouterImage(image=name, image_id=str(found.id), size_bytes=int(found.attrs.get("Size", 0)),
                                build_seconds=round(time.perf_counter() - started, 2),
                                requirements=wheels.requirements, cached=True)
    spec = replace(spec, labels={**labels, LABEL_ROUTER_KEY: key})
    with tempfile.TemporaryDirectory(prefix="mco-router-image-") as tmp:
        ctx = Path(tmp)
        (ctx / CTX_DEPS).mkdir(parents=True)
        for wheel in sorted(wheels.deps_dir.iterdir()):
            _link_or_copy(wheel, ctx / CTX_DEPS / wheel.name)
        (ctx / CTX_MCO).mkdir(parents=True)
        _link_or_copy(wheels.mco_wheel, ctx / CTX_MCO / wheels.mco_wheel.name)
        (ctx / "Dockerfile").write_text(render_router_dockerfile(spec))
        _, _, image_id = _run_build(client, ctx, name, progress, no_cache)
    image = client.images.get(image_id or name)
    return BuiltRouterImage(image=name, image_id=image.id, size_bytes=int(image.attrs.get("Size", 0)),
                            build_seconds=round(time.perf_counter() - started, 2),
                            requirements=wheels.requirements)
