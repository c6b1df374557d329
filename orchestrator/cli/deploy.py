"""``mco deploy`` and ``mco rollback``: options in, progress and results out.

The use case (gate, image, publish, stage, apply, watch, record, roll back) is
``orchestrator.releases.pipeline``; this module parses options and draws what it reports.
``mco render``, ``mco history`` and ``mco status`` are in ``orchestrator.cli.releases``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from orchestrator.cli._common import (
    CloudsOpt,
    ConfigOpt,
    OutputFormat,
    OutputOpt,
    ProgressLines,
    console,
    emit,
    err_console,
    split_clouds,
    styled,
)

__all__ = ["register"]

class CloudProgress(ProgressLines):
    """The pipeline's progress: one live line per cloud (and per image build or push), notes on stderr."""

    def note(self, text: str) -> None:
        err_console.print(f"[yellow]note:[/] {text}", highlight=False)  # stderr: JSON output stays clean


def _render_release_result(data: dict[str, Any]) -> None:
    from orchestrator.releases.pipeline import short_digest

    title = f"release {data['release']} ({data.get('kind', 'deploy')}): {data['status']}"
    if data.get("unchanged"):
        title += " -- unchanged"
    table = Table(title=title)
    for col in ("cloud", "status", "ready", "image", "endpoint", "reason"):
        table.add_column(col)
    for cloud, c in data["clouds"].items():
        reason = c.get("reason") or ""
        if c.get("rolled_back_to") is not None:
            reason += f" -> rolled back to {c['rolled_back_to']}"
        if c.get("detail") and c.get("status") != "deployed":
            reason += f"\n{c['detail']}"
        table.add_row(cloud, styled(c.get("status")), str(c.get("ready_replicas") if c.get("ready_replicas") is not None else "-"),
                      short_digest(c.get("image_digest")), c.get("endpoint") or "-", reason)
    console.print(table)
    if data.get("waves"):
        _render_waves(data["waves"])
    for note in data.get("notes", []):
        console.print(f"[dim]{note}[/]")


def _render_waves(doc: dict[str, Any]) -> None:
    """Each wave, each step and the values it was judged by."""
    table = Table(title=f"waves: {doc.get('status')}")
    for col in ("wave", "clouds", "step", "verdict", "waited", "measured"):
        table.add_column(col)
    for wave in doc.get("waves", []):
        for step in wave.get("steps", []) or [{}]:
            measured = ", ".join(f"{c['metric']}={c['value']:.4g}" if c.get("value") is not None
                                 else f"{c['metric']}=n/a ({c.get('samples', 0)} samples)"
                                 for c in step.get("checks", []))
            table.add_row(str(wave["wave"]), ", ".join(wave["clouds"]),
                          f"{step['percent']} %" if "percent" in step else "-", styled(step.get("verdict", wave["status"])),
                          f"{step.get('waited_s', 0):g} s", measured or "-")
    console.print(table)
    abort = doc.get("abort")
    if abort:
        console.print(f"[red]stopped at wave {abort['wave']} ({', '.join(abort['clouds'])}): {abort['reason']}[/]")
        if doc.get("never_touched"):
            console.print(f"never touched: {', '.join(doc['never_touched'])}")


def _render_dry_run(d: dict[str, Any]) -> None:
    from rich.syntax import Syntax

    for cloud, info in d["clouds"].items():
        if "error" in info:
            console.print(f"[bold]{cloud}[/]: [red]{info['error']}[/]")
            continue
        console.print(f"[bold]{cloud}[/]: {info['changed_objects']} of {info['objects']} objects would change")
        if info["diff"]:
            console.print(Syntax(info["diff"], "diff", theme="ansi_dark", background_color="default"))
    console.print("[dim]dry run: nothing was changed[/]")


def deploy_cmd(
    bundle_dir: Annotated[Path, typer.Argument(help="model bundle directory (from `mco model train`)")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show the diff against what is live; change nothing")] = False,
    force: Annotated[bool, typer.Option("--force", help="deploy even if the model fails the evaluation gate (recorded)")] = False,
    clouds: CloudsOpt = None,
    require: Annotated[list[str] | None, typer.Option("--require", "-r", help='extra gate requirement, e.g. "macro_f1>=0.95"')] = None,
    image: Annotated[str | None, typer.Option("--image", help="deploy this already-built local image instead of packaging")] = None,
    replicas: Annotated[int | None, typer.Option(help="replicas per cluster (default: deploy.replicas)")] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds to wait for each rollout (default: deploy.rollout_timeout_s)")] = None,
    auto_rollback: Annotated[bool | None, typer.Option("--auto-rollback/--no-auto-rollback",
                                                        help="a cloud whose rollout fails goes back to its previous release")] = None,
    wait: Annotated[float | None, typer.Option("--wait", help="seconds to wait for another deploy's lock (default: fail at once)")] = None,
    strategy: Annotated[str | None, typer.Option("--strategy", help="release strategy: all-at-once | waves (default: deploy.strategy)")] = None,
    config: ConfigOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Deploy a model to every cloud's cluster: gate, image, apply, watch, record."""
    from orchestrator.config import load_config
    from orchestrator.model.bundle import load_bundle
    from orchestrator.releases.pipeline import DryRun, cluster_clouds, deploy, settings_for

    cfg = load_config(config)
    chosen = cluster_clouds(cfg, split_clouds(clouds))
    settings = settings_for(cfg, replicas=replicas, timeout=timeout, auto_rollback=auto_rollback, wait=wait)
    bundle = load_bundle(bundle_dir)  # verifies every digest: a tampered bundle stops here
    with CloudProgress(enabled=output == OutputFormat.table) as progress:
        result = deploy(cfg, bundle, chosen, settings, image=image, require=require or [], force=force,
                        dry_run=dry_run, progress=progress, strategy=strategy)
    if isinstance(result, DryRun):
        emit(result.summary(), output, _render_dry_run)
        if not result.ok:
            raise typer.Exit(1)
        return
    data = result.summary()
    emit(data, output, _render_release_result)
    if data["status"] != "deployed":
        raise typer.Exit(1)


def rollback_cmd(
    to: Annotated[int | None, typer.Option("--to", help="release number to go back to (default: the one before each cloud's current)")] = None,
    clouds: CloudsOpt = None,
    timeout: Annotated[float | None, typer.Option(help="seconds to wait for each rollout")] = None,
    wait: Annotated[float | None, typer.Option("--wait", help="seconds to wait for another deploy's lock")] = None,
    config: ConfigOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Re-apply the recorded manifests of an earlier release. No rebuild, no push."""
    from orchestrator.config import load_config
    from orchestrator.releases.pipeline import rollback, settings_for

    cfg = load_config(config)
    names = split_clouds(clouds)
    settings = settings_for(cfg, timeout=timeout, wait=wait)
    with CloudProgress(enabled=output == OutputFormat.table) as progress:
        result = rollback(cfg, to=to, clouds=names, settings=settings, progress=progress)
    data = result.summary()
    emit(data, output, _render_release_result)
    if data["status"] != "deployed":
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy_cmd)
    app.command("rollback")(rollback_cmd)
