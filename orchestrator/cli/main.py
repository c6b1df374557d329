"""Entry point of the ``mco`` console script.

Each command group lives in its own module and is registered here. ``main`` is the
one place where an ``MCOError`` becomes a message and an exit code: users see what
went wrong and how to fix it, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys

import typer

from orchestrator import __version__
from orchestrator.cli import config_cmd as config_cmds
from orchestrator.cli import demo as demo_cmds
from orchestrator.cli import deploy as deploy_cmds
from orchestrator.cli import drill as drill_cmds
from orchestrator.cli import local as local_cmds
from orchestrator.cli import model as model_cmds
from orchestrator.cli import monitor as monitor_cmds
from orchestrator.cli import package as package_cmds
from orchestrator.cli import push as push_cmds
from orchestrator.cli import releases as releases_cmds
from orchestrator.cli import router as router_cmds
from orchestrator.cli import serve as serve_cmds
from orchestrator.cli import state as state_cmds
from orchestrator.cli._common import err_console
from orchestrator.errors import MCOError

app = typer.Typer(
    name="mco",
    help="Deploy one ML model to AWS, GCP and Azure at once, and survive the loss of any one.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mco {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
) -> None:
    """mco: multi-cloud deployment orchestrator for ML models."""


app.add_typer(model_cmds.app, name="model", help="train, evaluate and gate models")
app.add_typer(local_cmds.app, name="local", help="local stand-ins: storage emulators, registries, kind clusters")
app.add_typer(config_cmds.app, name="config", help="import infrastructure outputs (Pulumi stacks) into mco.yaml")
app.add_typer(router_cmds.app, name="router", help="the multi-cloud router: serve, status, report, export")
serve_cmds.register(app)
package_cmds.register(app)
push_cmds.register(app)
deploy_cmds.register(app)
releases_cmds.register(app)
app.add_typer(state_cmds.app, name="state", help="release state: lock holder, unlock, verify replicas, migrate")
monitor_cmds.register(app)
app.add_typer(drill_cmds.app, name="drill", help="failover drills: break something on purpose, measure, report")
demo_cmds.register(app)


def _wants_json(argv: list[str]) -> bool:
    for i, arg in enumerate(argv):
        if arg in ("--output", "-o") and i + 1 < len(argv) and argv[i + 1] == "json":
            return True
        if arg in ("--output=json", "-ojson"):
            return True
    return False


def main() -> None:
    argv = sys.argv[1:]
    try:
        rv = app(args=argv, standalone_mode=False)
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except MCOError as exc:
        if _wants_json(argv):
            payload = {"error": exc.message, "kind": type(exc).__name__, "hint": exc.hint}
            sys.stdout.write(json.dumps(payload) + "\n")
        err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        if exc.hint:
            err_console.print(f"[bold]fix:[/] {exc.hint}", highlight=False)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if isinstance(exc, _usage_error_types()):  # a mistyped command or option: click's own message
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        if os.environ.get("MCO_DEBUG"):
            raise
        # Anything else is a bug in mco, not the user's mistake: one line, and how to learn more.
        if _wants_json(argv):  # scripts still get one JSON object, never an empty stdout
            sys.stdout.write(json.dumps({"error": f"internal error: {type(exc).__name__}: {exc}",
                                         "kind": "InternalError", "hint": "run again with MCO_DEBUG=1"}) + "\n")
        err_console.print(f"[bold red]error:[/] internal error: {type(exc).__name__}: {exc}", highlight=False)
        err_console.print("[bold]fix:[/] this is a bug in mco; run again with MCO_DEBUG=1 for the traceback "
                          "and report it", highlight=False)
        sys.exit(70)


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """click's ClickException, from click itself and from the copy newer typer versions vendor."""
    found: list[type[BaseException]] = []
    try:
        import click

        found.append(click.ClickException)
    except ImportError:
        pass
    try:
        from typer._click.exceptions import ClickException  # typer >= 0.2x ships its own click
    except ImportError:
        pass
    else:
        found.append(ClickException)
    return tuple(found)


if __name__ == "__main__":
    main()
