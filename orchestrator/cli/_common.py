"""What every command shares: the ``--output`` option, printing, and the config option.

Commands return plain data (dicts, lists). ``emit`` prints it as JSON for scripts, or
hands it to a renderer (usually a rich table) for people.
"""

from __future__ import annotations

import enum
import json
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Self

import typer
from rich.console import Console
from rich.table import Table

from orchestrator.errors import ConfigError

__all__ = [
    "STATUS_STYLE",
    "CloudsOpt",
    "ConfigOpt",
    "OutputFormat",
    "OutputOpt",
    "ProgressLines",
    "compact_table",
    "console",
    "emit",
    "err_console",
    "kv_table",
    "split_clouds",
    "styled",
    "to_jsonable",
]

console = Console()
err_console = Console(stderr=True)


class ProgressLines:
    """Draws the progress the layers below report (an ``orchestrator.progress.ProgressFn``):
    one live line per subject (an image, a cloud) on stderr, or nothing when not ``enabled``
    (``--output json``). Subjects named up front show "waiting" until their first report."""

    def __init__(self, subjects: Iterable[str] = (), *, enabled: bool = True) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.enabled = enabled
        self._lock = threading.Lock()  # reports come from worker threads
        self._tasks: dict[str, Any] = {}
        self._progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[subject]:<8}"),
                                  TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console,
                                  disable=not enabled)
        for subject in subjects:
            self(subject, "waiting")

    def __call__(self, subject: str, message: str) -> None:
        from rich.markup import escape

        with self._lock:
            task = self._tasks.get(subject)
            if task is None:
                self._tasks[subject] = self._progress.add_task(escape(message), subject=escape(subject), total=None)
            else:
                self._progress.update(task, description=escape(message))

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


class OutputFormat(str, enum.Enum):
    table = "table"
    json = "json"


OutputOpt = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="table for people, json for scripts", case_sensitive=False),
]

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="project config (default: ./mco.yaml if it exists)"),
]


def to_jsonable(value: Any) -> Any:
    """Make numpy scalars, paths and dataclasses printable as JSON."""
    if hasattr(value, "model_dump"):
        return to_jsonable(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def emit(data: Any, output: OutputFormat, render: Callable[[Any], None] | None = None) -> None:
    """Print ``data`` as JSON, or with ``render`` (default: a key/value table)."""
    if output == OutputFormat.json:
        sys.stdout.write(json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")
        sys.stdout.flush()
        return
    if render is not None:
        render(data)
    elif isinstance(data, dict):
        console.print(kv_table(data))
    else:
        console.print(data)


def kv_table(data: dict[str, Any], title: str | None = None) -> Table:
    table = Table(title=title, show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold cyan")
    table.add_column()
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(to_jsonable(value))
        table.add_row(str(key), str(value))
    return table


def compact_table(title: str, *, caption: str | None = None) -> Table:
    """A table that fits an 80-column terminal: a rule under the header, no outer padding."""
    from rich import box

    return Table(title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)


# Options and styles shared by the release commands (deploy, rollback, render, history, status).
CloudsOpt = Annotated[str | None, typer.Option("--clouds", help="comma-separated clouds (default: every cloud with a cluster)")]


def split_clouds(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise ConfigError("--clouds is empty", hint="name at least one cloud, e.g. --clouds aws,gcp")
    return names


STATUS_STYLE = {"deployed": "green", "rolled_back": "yellow", "failed": "red", "interrupted": "red",
                "partial": "yellow", "in_progress": "cyan", "pending": "cyan", "applying": "cyan"}


def styled(status: str | None) -> str:
    status = status or "-"
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"
