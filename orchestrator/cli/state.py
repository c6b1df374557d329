"""``mco state``: the release state backend. ``lock`` shows the deploy lock's holder,
``unlock --force`` breaks it (recorded in the history), ``verify [--repair]`` compares the
replicas, ``migrate --to objectstore`` copies the SQLite history into the stores.

The work is in ``orchestrator.releases.state.ops``; this module parses options and draws.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from orchestrator.cli._common import ConfigOpt, OutputFormat, OutputOpt, compact_table, console, emit, kv_table

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True)


@app.command("lock")
def lock_cmd(config: ConfigOpt = None, output: OutputOpt = OutputFormat.table) -> None:
    """Show who holds the deploy lock: who, from which host, since when, until when."""
    from orchestrator.config import load_config
    from orchestrator.releases.state.ops import lock_info

    data = lock_info(load_config(config))

    def render(d: dict[str, Any]) -> None:
        holder = d.get("holder")
        if not holder:
            console.print(f"the deploy lock of {d['service']} is free ({d['backend']})")
            return
        table = kv_table({k: holder.get(k) for k in ("holder", "host", "pid", "purpose", "since", "until", "fence",
                                                     "stores") if holder.get(k) is not None},
                         title=f"deploy lock of {d['service']}: {'held' if d['held'] else 'not held by a majority'}")
        console.print(table)
        for name, store in d.get("stores", {}).items():
            if not store.get("reachable"):
                console.print(f"[yellow]unreachable:[/] {name}: {store.get('error')}", highlight=False)

    emit(data, output, render)


@app.command("unlock")
def unlock_cmd(force: Annotated[bool, typer.Option("--force", help="break the lock even if a deploy holds it")] = False,
               config: ConfigOpt = None, output: OutputOpt = OutputFormat.table) -> None:
    """Break the deploy lock (recorded in the history; the old holder's writes are refused after)."""
    from orchestrator.config import load_config
    from orchestrator.errors import ReleaseError
    from orchestrator.releases.state.ops import force_unlock

    if not force:
        raise ReleaseError("unlock breaks a lock another deploy may still hold",
                           hint="a crashed holder's lease expires by itself; pass --force to break it now")
    data = force_unlock(load_config(config))
    emit(data, output, lambda d: console.print(
        f"lock of {d['service']} broken (held by {(d['broke'] or {}).get('holder') or 'nobody'}); "
        f"recorded as history record {d['record']}"))


@app.command("verify")
def verify_cmd(repair: Annotated[bool, typer.Option("--repair", help="mend lagging or differing stores")] = False,
               config: ConfigOpt = None, output: OutputOpt = OutputFormat.table) -> None:
    """Compare the replicas of the history; name every difference."""
    from orchestrator.config import load_config
    from orchestrator.releases.state.ops import verify

    data = verify(load_config(config), repair=repair)

    def render(d: dict[str, Any]) -> None:
        table = compact_table(f"state of {d['service']}: {d['records']} records, "
                              + ("in sync" if d["in_sync"] else "replicas differ"))
        for col in ("store", "state", "records", "missing", "differing", "corrupt", "extra"):
            table.add_column(col, no_wrap=True)
        for s in d["stores"]:
            state = "[green]in sync[/]" if s["in_sync"] else ("[red]unreachable[/]" if not s["reachable"]
                                                             else "[yellow]lags[/]" if s["missing"] else "[yellow]differs[/]")
            table.add_row(s["store"], state, str(s["records"]), _nums(s["missing"]), _nums(s["differing"]),
                          _nums([c["record"] for c in s["corrupt"]]), _nums(s["extra"]))
        console.print(table)
        for s in d["stores"]:
            for c in s["corrupt"]:
                console.print(f"[red]corrupt[/] {s['store']} record {c['record']}: {c['reason']}", highlight=False)
        if d["repaired"]:
            console.print("repaired: " + ", ".join(f"{k} ({len(v)} records)" for k, v in d["repaired"].items()))

    emit(data, output, render)
    if not data["in_sync"]:
        raise typer.Exit(1)


def _nums(values: list[int]) -> str:
    if not values:
        return "-"
    return ",".join(map(str, values[:6])) + (f" (+{len(values) - 6})" if len(values) > 6 else "")


@app.command("migrate")
def migrate_cmd(to: Annotated[str, typer.Option("--to", help="the backend to copy the history into")] = "objectstore",
                config: ConfigOpt = None, output: OutputOpt = OutputFormat.table) -> None:
    """Copy every release (rendered manifests included) from SQLite into the object stores, and verify."""
    from orchestrator.config import load_config
    from orchestrator.releases.state.ops import migrate

    data = migrate(load_config(config), to=to)
    emit(data, output, lambda d: console.print(
        f"copied {d['copied']} releases of {d['service']}: "
        + ("[green]equal[/]" if d["equal"] else f"[red]differ: {d['differences']}[/]")
        + (", replicas in sync" if d["replicas_in_sync"] else ", [yellow]replicas differ[/]")
        + f"; next: {d['next']}"))
    if not (data["equal"] and data["replicas_in_sync"]):
        raise typer.Exit(1)
