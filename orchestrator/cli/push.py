"""``mco push`` and ``mco pull``: bundles to and from every cloud's object store.

``push`` prints ``{"bundle_digest", "name", "clouds": {cloud: {...}}}``; each step that
publishes something per cloud (bundles here; images elsewhere) merges its keys into the
same per-cloud dict. It exits non-zero if any cloud failed, after every cloud has finished.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from orchestrator.cli._common import (
    ConfigOpt,
    OutputFormat,
    OutputOpt,
    ProgressLines,
    compact_table,
    console,
    emit,
    err_console,
)

__all__ = ["RichPushProgress", "pull", "push", "register"]

CloudOpt = Annotated[list[str] | None, typer.Option("--cloud", help="push only to this cloud (repeatable)")]


def _bar() -> Progress:
    return Progress(TextColumn("[bold]{task.fields[cloud]:<8}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
                    console=err_console, transient=False, disable=not err_console.is_terminal)


class RichPushProgress:
    """One rich progress bar per cloud (on stderr, only when it is a terminal); shown while
    entered (``publish`` enters it for the bundle uploads only: the image push draws its own)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> RichPushProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def _task(self, cloud: str) -> Any:
        with self._lock:
            if cloud not in self._tasks:
                self._tasks[cloud] = self._progress.add_task(cloud, cloud=cloud, note="checking", total=None)
            return self._tasks[cloud]

    def start(self, cloud: str, total: int) -> None:
        self._progress.update(self._task(cloud), total=total, note="uploading" if total else "up to date")

    def advance(self, cloud: str, n: int) -> None:
        self._progress.advance(self._task(cloud), n)

    def finish(self, cloud: str, ok: bool, note: str) -> None:
        task = self._task(cloud)
        total = next((t.total for t in self._progress.tasks if t.id == task), None)
        self._progress.update(task, total=total or 1, completed=total or 1,
                              note="[green]done" if ok else "[red]failed")


def _render_push(data: dict[str, Any]) -> None:
    # Counts in the table, addresses and errors under it: the table fits 80 columns and
    # nothing a user needs to copy (a URI, an image reference) is cut short.
    table = compact_table(f"{data['name']}@sha256:{data['bundle_digest'][:12]}…",
                          caption="sent / had: the bundle's files uploaded now / already in the store")
    for col in ("cloud", "bundle", "sent", "had", "bytes", "verified by", "image"):
        table.add_column(col, overflow="fold")
    notes = []
    for cloud, r in data["clouds"].items():
        ok = "error" not in r
        if ok and "uploaded" in r:
            notes.append(f"{cloud} bundle: {r.get('uri', '')}")
        elif not ok:
            notes.append(f"[red]{cloud}[/] bundle: {r.get('endpoint', '')}: {r['error']}")
        if "image_error" in r:
            image = "[red]failed"
            notes.append(f"[red]{cloud}[/] image: {r['image_error']}")
        elif "image_digest" in r:
            image = f"{r.get('layers_pushed', 0)} layers sent" if r.get("transferred") else "no layer transferred"
            notes.append(f"{cloud} image: {r['image']}")
        else:
            image = "-"
        state = ("[green]has it" if "uploaded" in r else "-") if ok else "[red]failed"  # "-": image only
        table.add_row(cloud, state, str(r.get("uploaded", 0)), str(r.get("skipped", 0)),
                      str(r.get("bytes_uploaded", 0)), ", ".join(r.get("verification", [])) if ok else "-", image)
    console.print(table)
    for line in notes:
        console.print(line, highlight=False, soft_wrap=True)


def push(
    bundle_dir: Annotated[Path, typer.Argument(help="model bundle directory (from `mco model train`)")],
    cloud: CloudOpt = None,
    config: ConfigOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> int:
    """Push a bundle to every configured cloud at once: content-addressed, verified, idempotent."""
    from orchestrator.config import load_config
    from orchestrator.model.bundle import load_bundle
    from orchestrator.releases.publish import publish

    cfg = load_config(config)
    bundle = load_bundle(bundle_dir, verify=False)  # contents are checked against the card during the push
    # The bundle to every chosen cloud with storage, the image (built or reused) to every one with a registry.
    with ProgressLines(enabled=output == OutputFormat.table) as progress:
        published = publish(cfg, bundle, cloud or None, bundle_progress=RichPushProgress(_bar()), progress=progress)
    clouds = published.to_dict()
    data = {"bundle_digest": bundle.digest, "name": bundle.name, "ref": bundle.ref, "clouds": clouds}
    emit(data, output, _render_push)
    for text in published.notes:
        err_console.print(f"[yellow]note:[/] {text}", highlight=False)
    failed = [name for name, r in published.bundles.items() if not r.ok]
    for name in failed:
        r = published.bundles[name]
        err_console.print(f"[bold red]error:[/] {name} ({r.endpoint or 'no endpoint'}) does not have the bundle: "
                          f"{r.error.message if r.error else ''}", highlight=False)
        if r.error is not None and r.error.hint:
            err_console.print(f"[bold]fix:[/] {r.error.hint}", highlight=False)
    for name, exc in (published.images.failed if published.images else {}).items():
        err_console.print(f"[bold red]error:[/] {name} does not have the image: {exc.message}", highlight=False)
        if exc.hint:
            err_console.print(f"[bold]fix:[/] {exc.hint}", highlight=False)
    failed = list(published.failed())
    if failed:
        have = [n for n in clouds if n not in failed]
        err_console.print(f"pushed to {', '.join(have) or 'no cloud'}; failed on {', '.join(failed)}", highlight=False)
        return 1
    return 0


def pull(
    ref: Annotated[str, typer.Argument(help="NAME@DIGEST (or a bare digest), e.g. digits@sha256:3f2a…")],
    cloud: Annotated[str | None, typer.Option("--cloud", help="which cloud to read from (default: the only one)")] = None,
    out: Annotated[Path, typer.Option("--out", help="directory to create with the bundle")] = Path("bundle"),
    config: ConfigOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Download a bundle from one cloud, verifying every file's sha256 before it appears at --out."""
    from orchestrator.artifacts.layout import parse_ref
    from orchestrator.artifacts.pull import pull_from_provider
    from orchestrator.artifacts.push import storage_providers
    from orchestrator.config import load_config
    from orchestrator.errors import ConfigError

    name, digest = parse_ref(ref)
    cfg = load_config(config)
    providers = storage_providers(cfg, [cloud] if cloud else None)
    if len(providers) > 1:
        raise ConfigError(f"several clouds have storage ({', '.join(providers)}); say which to pull from",
                          hint=f"add --cloud {next(iter(providers))}")
    cloud_name, provider = next(iter(providers.items()))
    with Progress(TextColumn(f"[bold]{cloud_name}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task("pull", total=None)
        bundle = pull_from_provider(provider, name, digest, out, progress=lambda n: bar.advance(task, n))
    emit({"cloud": cloud_name, "name": bundle.name, "bundle_digest": bundle.digest, "path": str(bundle.path),
          "files": len(bundle.files()) + 1, "verified": True}, output,
         lambda d: console.print(f"[green]pulled[/] {d['name']}@sha256:{d['bundle_digest'][:12]}… from "
                                 f"{cloud_name} into {d['path']} (every sha256 verified)"))


def register(app: typer.Typer) -> None:
    app.command("push")(push)
    app.command("pull")(pull)
