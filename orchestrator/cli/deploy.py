"""``mco render``, ``mco deploy``, ``mco rollback``, ``mco history``, ``mco status``.

The commands are thin: rendering lives in ``orchestrator.kube.render``, applying and
watching in ``orchestrator.kube``, the release record, lock and rollback logic in
``orchestrator.releases``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from orchestrator.cli._common import ConfigOpt, OutputFormat, OutputOpt, console, emit, err_console
from orchestrator.errors import ConfigError

__all__ = ["register"]

# A render without a release or --image shows the shape with an obviously fake digest.
PLACEHOLDER_IMAGE = "example.invalid/mco/model@sha256:" + "0" * 64
PLACEHOLDER_DIGEST = "0" * 64

CloudsOpt = Annotated[str | None, typer.Option("--clouds", help="comma-separated clouds (default: every cloud with a cluster)")]


def _split_clouds(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise ConfigError("--clouds is empty", hint="name at least one cloud, e.g. --clouds aws,gcp")
    return names


def render_cmd(
    cloud: Annotated[str, typer.Option("--cloud", help="cloud whose cluster the objects are for, e.g. gcp")],
    model: Annotated[Path | None, typer.Option("--model", help="bundle directory whose digest to render")] = None,
    image: Annotated[str | None, typer.Option("--image", help="image by digest: REPO@sha256:… or sha256:<image id>")] = None,
    replicas: Annotated[int | None, typer.Option(help="replicas (default: deploy.replicas in the config)")] = None,
    overlay: Annotated[str | None, typer.Option(help="aws, gcp, azure or kind (default: from the cloud's config)")] = None,
    manifests: Annotated[Path | None, typer.Option(help="manifests directory (default: the source tree's)")] = None,
    config: ConfigOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Print the Kubernetes objects one cloud's cluster gets (YAML, or JSON with --output json).

    Values not given come from the cloud's current release, else placeholders.
    """
    from orchestrator.config import load_config
    from orchestrator.kube.render import OVERLAYS, ReleaseValues, dump_yaml, overlay_for, render_release
    from orchestrator.releases.store import open_store

    cfg = load_config(config)
    cloud_cfg = cfg.clouds.get(cloud)
    if cloud_cfg is None and overlay is None and cloud not in OVERLAYS:
        cfg.cloud(cloud)  # raises: names the configured clouds
    chosen_overlay = overlay or (overlay_for(cloud_cfg) if cloud_cfg is not None else cloud)
    cluster = cloud_cfg.cluster if cloud_cfg is not None else None

    current: dict[str, Any] = {}
    store = open_store(cfg, create=False)
    if store is not None:
        with store:
            current = store.current_cloud_values(cloud) or {}
    model_digest = current.get("model_digest")
    if model is not None:
        from orchestrator.model.bundle import load_bundle

        model_digest = load_bundle(model).digest
    image_ref = image or current.get("image_ref")
    notes = []
    if image_ref is None:
        image_ref = PLACEHOLDER_IMAGE
        notes.append("image is a placeholder: pass --image, or deploy a release first")
    if model_digest is None:
        model_digest = PLACEHOLDER_DIGEST
        notes.append("model digest is a placeholder: pass --model BUNDLE")
    values = ReleaseValues(
        image=image_ref, model_digest=model_digest,
        replicas=replicas or current.get("replicas") or cfg.deploy.replicas,
        namespace=cluster.namespace if cluster else "mco",
        node_port=cluster.node_port if cluster else None,
        cloud=cloud, release=current.get("release"), run_as_user=cfg.packaging.uid,
    )
    objs = render_release(chosen_overlay, values, manifests_dir=manifests)
    for note in notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False)
    if output == OutputFormat.json:
        emit({"cloud": cloud, "overlay": chosen_overlay, "objects": objs}, output)
    else:
        sys.stdout.write(dump_yaml(objs))


def register(app: typer.Typer) -> None:
    app.command("render")(render_cmd)
