"""``mco local``: start, stop and inspect the local stand-ins for the three clouds."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cli._common import OutputFormat, OutputOpt, compact_table, console, emit

app = typer.Typer(no_args_is_help=True)

KindArg = Annotated[str | None, typer.Argument(help="storage, registries or clusters (default: all)")]
ConfigOut = Annotated[Path, typer.Option("--config-out", help="the config file the stand-ins write")]


def _selected(kind: str | None) -> list[str]:
    from orchestrator.local.registry import STAND_INS, get_stand_in

    if kind is None:
        return list(STAND_INS)
    get_stand_in(kind)  # validates the name
    return [kind]


def _ctx(config_out: Path) -> Any:
    from orchestrator.local.base import LocalContext

    return LocalContext(config_path=config_out)


@app.command()
def up(kind: KindArg = None, config_out: ConfigOut = Path("mco.local.yaml"),
       output: OutputOpt = OutputFormat.table) -> None:
    """Start local stand-ins and write their endpoints to mco.local.yaml."""
    from orchestrator.local.registry import bring_up

    ctx = _ctx(config_out)
    result: dict[str, Any] = {}
    for name in _selected(kind):
        with console.status(f"starting {name}…") if output == OutputFormat.table else nullcontext():
            result[name] = bring_up(name, ctx)
    emit({"config": str(ctx.config_path), "started": result}, output,
         lambda d: console.print(f"[green]started[/] {', '.join(result)}; config written to {ctx.config_path}"))


@app.command()
def down(kind: KindArg = None, config_out: ConfigOut = Path("mco.local.yaml"),
         output: OutputOpt = OutputFormat.table) -> None:
    """Stop local stand-ins."""
    from orchestrator.local.registry import get_stand_in

    ctx = _ctx(config_out)
    stopped = []
    for name in reversed(_selected(kind)):
        get_stand_in(name).down(ctx)
        stopped.append(name)
    emit({"stopped": stopped}, output, lambda d: console.print(f"stopped {', '.join(stopped)}"))


@app.command()
def status(kind: KindArg = None, config_out: ConfigOut = Path("mco.local.yaml"),
           output: OutputOpt = OutputFormat.table) -> None:
    """Show each local server and cluster with its state."""
    from orchestrator.local.registry import get_stand_in

    ctx = _ctx(config_out)
    rows: list[dict[str, Any]] = []
    for name in _selected(kind):
        for row in get_stand_in(name).status(ctx):
            rows.append({"kind": name, **row})

    def render(data: dict[str, Any]) -> None:
        # One fixed set of columns for every kind of stand-in: where it answers, and the one
        # detail a user needs next (bucket, auth, kube context). The rest: --output json.
        table = compact_table("local stand-ins", caption="pids, host ports and everything else: --output json")
        for col in ("", "cloud", "name", "state"):
            table.add_column(col, no_wrap=True)
        table.add_column("address", overflow="fold")
        table.add_column("detail", overflow="fold")  # bucket, registry auth or kube context
        styles = {"running": "green", "ready": "green", "stopped": "yellow", "absent": "dim"}
        previous = None
        stale = False
        for r in data["items"]:
            state = str(r.get("state", ""))
            address = str(r.get("endpoint") or r.get("url") or "").removeprefix("http://")
            detail = r.get("bucket") or r.get("auth") or r.get("context") or ""
            group = r["kind"] if r["kind"] != previous else ""  # the kind once, at the head of its rows
            if group and previous is not None:
                table.add_section()
            previous = r["kind"]
            shown = f"[{styles.get(state, 'white')}]{state}[/]"
            if r.get("node_image_current") is False:
                shown += " [yellow](old)[/]"
                stale = True
            table.add_row(f"[bold]{group}[/]", str(r.get("cloud", "")), str(r.get("name", "")), shown, address,
                          str(detail))
        console.print(table)
        if stale:
            console.print("[yellow]note:[/] (old): the cluster runs an older node image than `make setup` built; "
                          "`mco local down clusters && mco local up clusters` makes it again with the new one")

    emit({"items": rows}, output, render)


