"""``build_router_image``: the router as an image, built offline like the model's.

Only mco's core and the ``router`` extra go in (``wheelhouse.prepare_router_wheels``):
no scikit-learn, onnxruntime or cloud SDK. The tag is derived from the mco wheel (the
code is all that changes), and a release records the image by its id/digest per cloud.
The config comes from a mounted file (``ROUTER_CONFIG``) and the admin token from the
environment (a Secret), never from the image.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import __version__
from orchestrator.config import PackagingConfig
from orchestrator.packaging.build import LABEL_MCO_VERSION, _check_base_image, _link_or_copy, _run_build
from orchestrator.packaging.dockerfile import CTX_DEPS, CTX_MCO, RouterDockerfileSpec, render_router_dockerfile
from orchestrator.packaging.wheelhouse import Wheels
from orchestrator.progress import ProgressFn, quiet

__all__ = ["LABEL_ROUTER", "BuiltRouterImage", "build_router_image", "router_image_name"]

LABEL_ROUTER = "dev.mco.router"


@dataclass(frozen=True)
class BuiltRouterImage:
    image: str
    image_id: str
    size_bytes: int
    build_seconds: float
    requirements: tuple[str, ...]


def router_image_name(packaging: PackagingConfig, wheels: Wheels) -> str:
    # the mco wheel's cache directory is keyed by a hash of the source: the same code, the same tag
    return f"{packaging.image_prefix}/router:{wheels.mco_wheel.parent.name.removeprefix('mco-wheel-')}"


def build_router_image(*, packaging: PackagingConfig | None = None, client: Any = None,
                       progress: ProgressFn = quiet, wheels: Wheels | None = None) -> BuiltRouterImage:
    from orchestrator.packaging.engine import docker_client
    from orchestrator.packaging.wheelhouse import prepare_router_wheels

    packaging = packaging or PackagingConfig()
    started = time.perf_counter()
    client = client or docker_client()
    _check_base_image(client, packaging.base_image)
    wheels = wheels or prepare_router_wheels()
    name = router_image_name(packaging, wheels)
    labels = {"org.opencontainers.image.title": "mco-router",
              "org.opencontainers.image.version": __version__,
              "org.opencontainers.image.base.name": packaging.base_image,
              LABEL_MCO_VERSION: __version__, LABEL_ROUTER: "true"}
    spec = RouterDockerfileSpec(base_image=packaging.base_image, python=packaging.python, uid=packaging.uid,
                                mco_wheel_name=wheels.mco_wheel.name, mco_version=__version__, labels=labels)
    with tempfile.TemporaryDirectory(prefix="mco-router-image-") as tmp:
        ctx = Path(tmp)
        (ctx / CTX_DEPS).mkdir(parents=True)
        for wheel in sorted(wheels.deps_dir.iterdir()):
            _link_or_copy(wheel, ctx / CTX_DEPS / wheel.name)
        (ctx / CTX_MCO).mkdir(parents=True)
        _link_or_copy(wheels.mco_wheel, ctx / CTX_MCO / wheels.mco_wheel.name)
        (ctx / "Dockerfile").write_text(render_router_dockerfile(spec))
        _, _, image_id = _run_build(client, ctx, name, progress, False)
    image = client.images.get(image_id or name)
    return BuiltRouterImage(image=name, image_id=image.id, size_bytes=int(image.attrs.get("Size", 0)),
                            build_seconds=round(time.perf_counter() - started, 2),
                            requirements=wheels.requirements)
