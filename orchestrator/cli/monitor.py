"""``mco monitor``: the model on live traffic, per cloud, from the router's kept predictions.

    mco monitor                       class distribution against the training priors, drift (PSI),
                                      live metrics and feedback count, per cloud and release
    mco monitor --watch               the same, redrawn until Ctrl-C
    mco monitor --report DIR          PNG + HTML of drift and live F1 per cloud over time
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cli._common import ConfigOpt, OutputFormat, OutputOpt, compact_table, console, emit
from orchestrator.cli.router import UrlOpt, _admin_get, _load


def _table(data: dict[str, Any]) -> Any:
    table = compact_table(f"live, last {data['window_s']:g} s", caption=f"kept {data['kept']} of {data['capacity']} "
                          f"answers, {data['dropped']} dropped, {data['feedback_joined']} labelled")
    for col in ("cloud", "release", "req", "fb", "err", "p95 ms", "class psi", "proba psi", "vs peers psi", "live acc",
                "live F1", "most shifted class (live / training)"):
        table.add_column(col)

    def f(v: Any, digits: int = 3) -> str:
        return "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    for r in data["rows"]:
        psi = f(r["class_drift_psi"])
        if "class_drift_psi" in r["drifting"]:
            psi = f"[red]{psi} drift[/]"
        shift = ", ".join(f"{c}: {v['live']:.2f}/{v['training']:.2f}" for c, v in list(r["class_shift"].items())[:2])
        table.add_row(r["cloud"], r["release"], str(r["requests"]), str(r["feedback"]), f(r["error_rate"]),
                      f(r["p95_ms"], 1), psi, f(r["proba_drift_psi"]), f(r["peer_class_drift_psi"]),
                      f(r["live_accuracy"]), f(r["live_macro_f1"]),
                      shift or "-")
    return table


def monitor_cmd(
    config: ConfigOpt = None,
    url: UrlOpt = None,
    window: Annotated[float | None, typer.Option("--window", help="seconds of traffic (default router.feedback.window_s)")] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="redraw the table live until Ctrl-C")] = False,
    interval: Annotated[float, typer.Option(help="seconds between redraws with --watch")] = 2.0,
    report: Annotated[Path | None, typer.Option("--report", help="write monitor-report.png and .html here")] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """The model on live traffic, per cloud: class distribution, drift, live metrics, feedback."""
    from orchestrator.monitoring.report import monitor_rows, write_monitor_report

    mco = _load(config)
    path = "/admin/live" + (f"?window_s={window}" if window else "")

    def read() -> dict[str, Any]:
        live = _admin_get(mco, url, path)
        return {**{k: v for k, v in live.items() if k != "groups"}, "rows": monitor_rows(live), "groups": live["groups"]}

    data = read()
    if report is not None:
        files = write_monitor_report(_admin_get(mco, url, "/admin/live/series"), data, report)
        data["report"] = files
    if watch and output == OutputFormat.table:
        import time

        from rich.live import Live

        with Live(_table(data), console=console, refresh_per_second=2) as live:
            try:
                while True:
                    time.sleep(max(0.5, interval))
                    live.update(_table(read()))
            except KeyboardInterrupt:
                return

    def draw(d: dict[str, Any]) -> None:
        console.print(_table(d))
        if "report" in d:
            console.print(f"wrote [bold]{d['report']['png']}[/] and [bold]{d['report']['html']}[/]")

    emit(data, output, draw)


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor_cmd)
