"""``mco router report``: latency and cost per cloud over time, as a PNG and an HTML page.

Input is what ``GET /admin/series`` and ``GET /admin/events`` return (or the same JSON
saved to files), so a report can be drawn from a live router or after the fact.
"""

from __future__ import annotations

import html
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["write_report"]

_EVENT_COLORS = {"ejection": "tab:red", "health_down": "tab:orange", "failover": "black",
                 "failback": "tab:green", "readmission": "tab:olive", "health_up": "tab:cyan",
                 "all_down": "darkred", "recovered": "tab:green", "targets_reloaded": "tab:purple"}


def _clean(v: Any) -> float:
    return float("nan") if v is None else float(v)


def write_report(series: dict[str, Any], events: list[dict[str, Any]], out_dir: Path,
                 *, status: dict[str, Any] | None = None) -> dict[str, str]:
    from orchestrator.errors import MissingExtraError

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingExtraError("matplotlib", "router", purpose="router reports") from exc

    out_dir.mkdir(parents=True, exist_ok=True)
    cols = series["columns"]
    idx = {c: i for i, c in enumerate(cols)}
    targets = {k: v for k, v in series["targets"].items() if k != "__overall__"}
    t0 = min((rows[0][0] for rows in targets.values() if rows), default=0.0)

    fig, axes = plt.subplots(4, 1, figsize=(11, 12), sharex=True)
    ax_lat, ax_rps, ax_cost_h, ax_cost_k = axes
    for name, rows in sorted(targets.items()):
        if not rows:
            continue
        x = [r[0] - t0 for r in rows]
        line, = ax_lat.plot(x, [_clean(r[idx["p50_ms"]]) for r in rows], label=f"{name} p50")
        ax_lat.plot(x, [_clean(r[idx["p99_ms"]]) for r in rows], linestyle="--", color=line.get_color(),
                    label=f"{name} p99")
        ax_rps.plot(x, [_clean(r[idx["rps"]]) for r in rows], color=line.get_color(), label=name)
        ax_cost_h.plot(x, [_clean(r[idx["cost_per_hour"]]) for r in rows], color=line.get_color(), label=name)
        ax_cost_k.plot(x, [_clean(r[idx["cost_per_1k_requests"]]) for r in rows], color=line.get_color(), label=name)
    for ev in events:
        if ev["ts"] < t0:
            continue
        for ax in axes:
            ax.axvline(ev["ts"] - t0, color=_EVENT_COLORS.get(ev["kind"], "grey"), alpha=0.5, linewidth=1)
        ax_lat.annotate(f"{ev['kind']} {ev.get('target') or ''}", (ev["ts"] - t0, 1), xycoords=("data", "axes fraction"),
                        rotation=90, fontsize=7, va="top", ha="right")
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_yscale("log")
    ax_rps.set_ylabel("requests/s")
    ax_cost_h.set_ylabel("cost per hour (USD)")
    ax_cost_k.set_ylabel("cost per 1,000 req (USD)")
    ax_cost_k.set_xlabel("seconds since the first sample")
    for ax in axes:
        ax.grid(alpha=0.3)
        handles, _ = ax.get_legend_handles_labels()
        if handles:
            ax.legend(fontsize=8, loc="upper left", ncol=3)
    ax_lat.set_title("mco router: latency, traffic and cost per cloud")
    fig.tight_layout()
    png = out_dir / "router-report.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)

    page = out_dir / "router-report.html"
    page.write_text(_html(targets, cols, events, status, png.name))
    return {"png": str(png), "html": str(page)}


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _html(targets: dict[str, list[list[Any]]], cols: list[str], events: list[dict[str, Any]],
          status: dict[str, Any] | None, png: str) -> str:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    rows = []
    for t in (status or {}).get("targets", []):
        rows.append("<tr>" + "".join(f"<td>{_fmt(t.get(k))}</td>" for k in (
            "name", "healthy", "requests", "p50_ms", "p95_ms", "p99_ms", "cost_per_hour", "cost_per_1k_requests")) + "</tr>")
        errs = t.get("errors") or {}
        rows[-1] = rows[-1].replace("</tr>", f"<td>{_fmt(json.dumps(errs))}</td></tr>")
    ev_rows = "".join(
        f"<tr><td>{_fmt(e.get('time'))}</td><td>{_fmt(e.get('kind'))}</td><td>{_fmt(e.get('target'))}</td>"
        f"<td><code>{_fmt(json.dumps(e.get('detail', {})))}</code></td></tr>" for e in events)
    status_table = ("<h2>Now</h2><table><tr><th>cloud</th><th>healthy</th><th>requests</th><th>p50 ms</th>"
                    "<th>p95 ms</th><th>p99 ms</th><th>cost/h (USD)</th><th>cost/1k req (USD)</th><th>errors</th></tr>"
                    + "".join(rows) + "</table>") if rows else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>mco router report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}</style></head>
<body><h1>mco router report</h1><p>Generated {now}. Clouds: {html.escape(', '.join(sorted(targets)))}.</p>
{status_table}
<h2>Over time</h2><img src="{html.escape(png)}" alt="latency, traffic and cost per cloud" style="max-width:100%">
<h2>Events</h2><table><tr><th>time (UTC)</th><th>kind</th><th>target</th><th>detail</th></tr>{ev_rows}</table>
</body></html>
"""
