"""``mco local``: start, stop and inspect the local stand-ins for the three clouds."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from orchestrator.cli._common import OutputFormat, OutputOpt, console, emit

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
    from orchestrator.local.base import update_local_config
    from orchestrator.local.registry import get_stand_in

    ctx = _ctx(config_out)
    result: dict[str, Any] = {}
    for name in _selected(kind):
        stand_in = get_stand_in(name)
        with console.status(f"starting {name}…") if output == OutputFormat.table else nullcontext():
            sections = stand_in.up(ctx)
        update_local_config(ctx.config_path, sections)
        result[name] = sections
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
        table = Table(title="local stand-ins")
        cols = ["kind", "name", "cloud", "state"] + sorted({k for r in rows for k in r} - {"kind", "name", "cloud", "state"})
        for col in cols:
            table.add_column(col)
        for r in rows:
            table.add_row(*[str(r.get(c, "")) for c in cols])
        console.print(table)

    emit({"items": rows}, output, render)


