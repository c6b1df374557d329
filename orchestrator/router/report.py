"""The router's reports: what ``GET /admin/status`` and ``GET /admin/series`` answer, and
``mco router report``, latency and cost per cloud over time as a PNG and an HTML page.

``status_report`` and ``series_report`` build their JSON from the router's state when
asked; nothing here runs per request. ``write_report`` draws from what those two and
``GET /admin/events`` return (or the same JSON saved to files), so a report can be
drawn from a live router or after the fact.
"""

from __future__ import annotations

import html
import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.plotting import pyplot, save_panels
from orchestrator.router.accounting import as_ms, percentile
from orchestrator.router.sampler import STEP_S, SeriesPoint

if TYPE_CHECKING:
    from orchestrator.router.sampler import Sampler
    from orchestrator.router.state import Router

__all__ = ["series_report", "status_report", "write_report"]


def _money(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def status_report(router: Router) -> dict[str, Any]:
    """``GET /admin/status``: per target counters, percentiles since start, health and cost; the totals."""
    rows = []
    total_cost_h = 0.0
    cost_known = True
    for t in router.balancer.by_priority:
        s = t.stats
        out = router.passive.state(t.name)
        check = router.active.state(t.name)
        cost_h = t.cost.per_hour(t.recent_bytes_per_s)
        if cost_h is None:
            cost_known = False
        else:
            total_cost_h += cost_h
        p50, p95, p99 = (percentile(s.counts, q) for q in (0.5, 0.95, 0.99))
        rows.append({
            "name": t.name, "url": t.cfg.url, "priority": t.cfg.priority, "weight": t.cfg.weight,
            "pricing_key": t.cfg.pricing_key, "healthy": t.healthy, "active_up": t.up["active"],
            "ejected": not t.up["passive"],
            "ejected_until": (out.ejected_until or None) if out else None,
            "ejections": out.ejections if out else 0,
            "last_check_error": check.last_error if check else None,
            "requests": s.requests, "errors": dict(s.errors), "responses_4xx": s.responses_4xx,
            "retries": s.retries, "hedges": s.hedges,
            "p50_ms": as_ms(p50), "p95_ms": as_ms(p95), "p99_ms": as_ms(p99), "ewma_ms": as_ms(s.ewma_s or None),
            "rps": round(t.recent_rps, 2), "window_10s": t.window,
            "cost_per_hour": _money(cost_h),
            "cost_per_1k_requests": _money(t.cost.per_1k_requests(t.recent_rps, t.recent_bytes_per_s)),
            # cross-cloud bytes (locality: none for the router's own cloud) at the source cloud's price
            "local": t.local, "egress_gb": round((s.bytes_out + (0 if t.local else s.bytes_in)) / 1e9, 9)
            if router.cfg.cloud else round(s.bytes_out / 1e9, 9),
            "egress_usd": _money(t.cost.egress_usd(s.bytes_out, s.bytes_in)),
        })
    o = router.overall
    total_rps = sum(t.recent_rps for t in router.balancer.by_priority)
    return {
        "policy": router.cfg.policy,
        "uptime_s": round(time.time() - router.started, 1),
        "all_down": router.balancer.all_down,
        "active_target": router.balancer.healthy[0].name if router.balancer.healthy else None,
        "targets": rows,
        "overall": {
            "requests": o.requests, "client_errors": dict(router.client_errors),
            "p50_ms": as_ms(percentile(o.counts, 0.5)), "p95_ms": as_ms(percentile(o.counts, 0.95)),
            "p99_ms": as_ms(percentile(o.counts, 0.99)),
            "cost_per_hour": _money(total_cost_h) if cost_known else None,
            "cost_per_1k_requests": _money(total_cost_h / (total_rps * 3600) * 1000)
            if cost_known and total_rps > 0 else None,
        },
        "retry_budget": router.budget.snapshot(),
        "saturation": router.saturation() if router.saturation is not None else None,
    }


def series_report(sampler: Sampler) -> dict[str, Any]:
    """``GET /admin/series``: each target's points as rows of ``columns``, NaN as null."""
    return {"columns": list(SeriesPoint._fields), "step_s": STEP_S,
            "targets": {name: [[None if isinstance(v, float) and math.isnan(v) else v for v in point] for point in points]
                        for name, points in sampler.series.items()}}

_EVENT_COLORS = {"ejection": "tab:red", "health_down": "tab:orange", "failover": "black",
                 "failback": "tab:green", "readmission": "tab:olive", "health_up": "tab:cyan",
                 "all_down": "darkred", "recovered": "tab:green", "targets_reloaded": "tab:purple"}


def _clean(v: Any) -> float:
    return float("nan") if v is None else float(v)


def write_report(series: dict[str, Any], events: list[dict[str, Any]], out_dir: Path,
                 *, status: dict[str, Any] | None = None) -> dict[str, str]:
    plt = pyplot(extra="router", purpose="router reports")

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
    png = out_dir / "router-report.png"
    save_panels(fig, axes, png, title="mco router: latency, traffic and cost per cloud", legend_columns=3)

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
