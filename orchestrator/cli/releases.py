"""``mco render``, ``mco history``, ``mco status``: what a release is, was, and runs now.

The values come from ``orchestrator.releases`` (``pipeline.render_cloud``,
``pipeline.cloud_status``, the history store); this module only parses options and prints.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cli._common import (
    STATUS_STYLE,
    CloudsOpt,
    ConfigOpt,
    OutputFormat,
    OutputOpt,
    compact_table,
    console,
    emit,
    err_console,
    split_clouds,
    styled,
)

__all__ = ["history_cmd", "register", "render_cmd", "status_cmd"]


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
    from orchestrator.kube.render import dump_yaml
    from orchestrator.releases.pipeline import render_cloud

    cfg = load_config(config)
    digest, bundle_bytes = None, 0
    if model is not None:
        from orchestrator.model.bundle import load_bundle

        bundle = load_bundle(model)
        digest, bundle_bytes = bundle.digest, bundle.total_bytes()
    rendered = render_cloud(cfg, cloud, model_digest=digest, image=image, replicas=replicas, overlay=overlay,
                            manifests=manifests, bundle_bytes=bundle_bytes)
    for note in rendered.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False)
    if output == OutputFormat.json:
        emit({"cloud": cloud, "overlay": rendered.overlay, "objects": rendered.objects}, output)
    else:
        sys.stdout.write(dump_yaml(rendered.objects))


def _mark(cloud: dict[str, Any]) -> str:
    """One cloud's outcome in a release, in a few characters (the history table's legend)."""
    status = cloud.get("status")
    text = {"deployed": "✓", "failed": "✗", "rolled_back": f"↩{cloud.get('rolled_back_to') or ''}"}.get(
        str(status), str(status or "-"))
    return f"[{STATUS_STYLE.get(str(status), 'white')}]{text}[/]"


def _waves_line(doc: dict[str, Any]) -> str:
    """A waves deploy in one line: each wave's clouds and outcome, and where it stopped."""
    marks = {"passed": "✓", "rolled_back": "↩", "in_progress": "…"}
    parts = [f"{'+'.join(w['clouds'])} {marks.get(str(w.get('status')), str(w.get('status')))}"
             f" ({'/'.join(str(s['percent']) for s in w.get('steps', []))} %)" for w in doc.get("waves", [])]
    line = "waves: " + " → ".join(parts or ["none started"])
    abort = doc.get("abort")
    if abort:
        line += f"; stopped: {abort.get('reason')}"
    return line


def history_cmd(
    limit: Annotated[int | None, typer.Option(help="show only the newest N releases")] = None,
    manifests: Annotated[bool, typer.Option("--manifests", help="include the rendered manifests (JSON output)")] = False,
    config: ConfigOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """List releases: newest first, with each cloud's status."""
    from orchestrator.config import load_config
    from orchestrator.releases.pipeline import short_digest
    from orchestrator.releases.state import open_history

    cfg = load_config(config)
    store = open_history(cfg, create=False)
    releases = []
    state: dict[str, Any] = {"backend": cfg.state.backend}
    if store is not None:
        with store:
            releases = [r.summary(manifests=manifests) for r in store.list(limit=limit)]
            if hasattr(store, "state"):
                state = store.state()

    def render(data: dict[str, Any]) -> None:
        if data["state"].get("possibly_stale"):
            err_console.print(f"[yellow]warning:[/] possibly stale: only a minority of the state stores answered "
                              f"(unreachable: {', '.join(data['state']['unreachable'])}); newer releases may exist",
                              highlight=False)
        if not data["releases"]:
            console.print("no releases yet; deploy with `mco deploy BUNDLE`")
            return
        # One line per cloud inside each release: readable on an 80-column terminal.
        table = compact_table(f"releases of {cfg.project.name}",
                              caption="✓ deployed  ✗ failed  ↩N rolled back to release N\n"
                                      "who made each release, details and full digests: --output json")
        for col in ("#", "when (UTC)", "kind", "status", "model"):
            table.add_column(col, no_wrap=True)
        table.add_column("clouds", overflow="fold")
        for r in data["releases"]:
            kind = r["kind"] + (f" of {r['rollback_of']}" if r.get("rollback_of") is not None else "")
            if r["gate_forced"]:
                kind += " [yellow](gate forced)[/]"
            clouds_txt = "\n".join(f"{c} {_mark(v)}" + (f" {v['reason']}" if v.get("reason") else "")
                                   for c, v in r["clouds"].items())
            if r.get("waves"):
                clouds_txt += "\n" + _waves_line(r["waves"])
            when = str(r["created_at"])[5:16].replace("T", " ")
            table.add_row(str(r["release"]), when, kind, styled(r["status"]), short_digest(r["model_digest"], 8),
                          clouds_txt)
        console.print(table)

    emit({"service": cfg.project.name, "state": state, "releases": releases}, output, render)


def status_cmd(
    clouds: CloudsOpt = None,
    config: ConfigOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Per cloud: the current release, image digest, ready replicas and endpoint (read live)."""
    from orchestrator.config import load_config
    from orchestrator.releases.pipeline import cloud_status, cluster_clouds, short_digest, unfinished_release

    cfg = load_config(config)
    rows = cloud_status(cfg, cluster_clouds(cfg, split_clouds(clouds)))
    unfinished = unfinished_release(cfg)

    def render(data: dict[str, Any]) -> None:
        table = compact_table("deployments")
        for col in ("cloud", "#", "state", "ready", "model", "image"):
            table.add_column(col, no_wrap=True)
        table.add_column("endpoint", overflow="fold")
        for name, r in data["clouds"].items():
            ready = "-" if r.get("ready_replicas") is None else f"{r['ready_replicas']}/{r.get('replicas') or '?'}"
            state = r["state"] + (f": {r['error']}" if r.get("error") else "")
            table.add_row(name, str(r["release"] or "-"), state, ready, short_digest(r["model_digest"], 10),
                          short_digest(r["image_digest"], 10), r["endpoint"] or "-")
        console.print(table)
        if data.get("unfinished"):
            u = data["unfinished"]
            color = {"running": "yellow"}.get(u["state"], "red")
            console.print(f"[{color}]{u['state']}:[/] {u['message']}", highlight=False)

    data: dict[str, Any] = {"clouds": rows}
    if unfinished is not None:
        data["unfinished"] = unfinished
    emit(data, output, render)


def register(app: typer.Typer) -> None:
    app.command("render")(render_cmd)
    app.command("history")(history_cmd)
    app.command("status")(status_cmd)
