"""``mco package BUNDLE``: build the model-server image for a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from orchestrator.cli._common import ConfigOpt, OutputFormat, OutputOpt, ProgressLines, console, emit, kv_table


def package(
    bundle_dir: Annotated[Path, typer.Argument(help="model bundle directory (from `mco model train`)")],
    config: ConfigOpt = None,
    model_source: Annotated[str | None, typer.Option(
        "--model-source", help="baked (default) or fetch (from the cloud's bucket at startup)")] = None,
    base_image: Annotated[str | None, typer.Option(help="override packaging.base_image (a local image)")] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Build the image that serves BUNDLE_DIR: offline, non-root, digest-checked at startup."""
    from orchestrator.config import load_config
    from orchestrator.errors import ConfigError
    from orchestrator.packaging.build import build_image

    cfg = load_config(config)
    packaging = cfg.packaging
    updates: dict[str, object] = {}
    if model_source is not None:
        if model_source not in ("baked", "fetch"):
            raise ConfigError(f"--model-source is '{model_source}'", hint="use baked or fetch")
        source: Literal["baked", "fetch"] = "fetch" if model_source == "fetch" else "baked"
        updates["model_source"] = source
    if base_image is not None:
        updates["base_image"] = base_image
    if updates:
        packaging = packaging.model_copy(update=updates)
    with ProgressLines(enabled=output == OutputFormat.table) as progress:
        built = build_image(bundle_dir, packaging=packaging, progress=progress)

    def render(data: dict[str, object]) -> None:
        console.print(kv_table({**data, "cached steps": f"{built.cached_steps}/{built.steps}",
                                "bundle digest": built.bundle_digest}))

    emit(built.summary(), output, render)


def register(app: typer.Typer) -> None:
    app.command("package")(package)
