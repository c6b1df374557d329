"""Drill reports: ``report.json``, ``timeline.png``, ``timeline.html`` and ``requests.csv``.

The timeline shows, per second: requests per cloud (who answered), client errors, client
latency (p50 and p99), and each cloud's health as the router saw it, with vertical markers
for the fault, the ejection, the failover, the repair and the failback. Health and markers
come from the router's event log; everything else from the clients' own records.

The HTML page is self-contained (the PNG is embedded as base64, no scripts, no CDN), so it
opens from a CI artifact or a laptop with no network.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.testing.traffic import RequestRecord

__all__ = ["MARKER_KINDS", "health_intervals", "markers_from", "per_second", "rollout_line", "write_report"]

# Router event kinds drawn as markers, with the drill's own "fault" and "repair".
MARKER_KINDS = ("fault", "ejection", "health_down", "failover", "repair", "repaired", "readmission", "health_up",
                "failback", "all_down", "recovered", "deploy", "rollback")
_MARKER_STYLE = {
    "fault": ("#d62728", "-"), "repair": ("#2ca02c", "-"), "repaired": ("#2ca02c", ":"),
    "ejection": ("#ff7f0e", "--"), "health_down": ("#ff7f0e", ":"), "failover": ("#9467bd", "--"),
    "readmission": ("#17becf", "--"), "health_up": ("#17becf", ":"), "failback": ("#1f77b4", "--"),
    "all_down": ("#000000", "-"), "recovered": ("#000000", ":"), "rollback": ("#8c564b", "--"),
    "deploy": ("#8c564b", "-"),
}
_FALLBACK_COLORS = ("#7f7f7f", "#bcbd22", "#e377c2", "#8c564b")


def _color(cloud: str, clouds: Sequence[str]) -> str:
    from orchestrator.providers.loader import PROVIDERS

    provider = PROVIDERS.get(cloud)  # the stand-ins are named after the clouds they stand in for
    if provider is not None and provider.color:
        return provider.color
    return _FALLBACK_COLORS[list(clouds).index(cloud) % len(_FALLBACK_COLORS)] if cloud in clouds else "#7f7f7f"


def per_second(records: Sequence[RequestRecord], start: float, end: float, clouds: Sequence[str]) -> dict[str, Any]:
    """Bucket records by the second they were sent in (relative to ``start``)."""
    n = max(1, math.ceil(end - start))
    rps = {c: [0] * n for c in clouds}
    errors = [0] * n
    lat: list[list[float]] = [[] for _ in range(n)]
    for r in records:
        i = int(r.sent - start)
        if not 0 <= i < n:
            continue
        if r.ok:
            if r.cloud in rps:
                rps[r.cloud][i] += 1
            lat[i].append(r.latency * 1000)
        else:
            errors[i] += 1

    def pct(values: list[float], q: float) -> float | None:
        if not values:
            return None
        values = sorted(values)
        return round(values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))], 3)

    # The last bucket is usually a fraction of a second: its width turns counts into rates.
    width = [1.0] * n
    width[-1] = max(1e-3, min(1.0, (end - start) - (n - 1)))
    return {"t": list(range(n)), "width": [round(w, 3) for w in width], "rps": rps, "errors": errors,
            "p50_ms": [pct(v, 50) for v in lat], "p99_ms": [pct(v, 99) for v in lat]}


def health_intervals(events: Sequence[dict[str, Any]], clouds: Sequence[str], start: float,
                     end: float) -> dict[str, list[tuple[float, float, str]]]:
    """Per cloud, ``(from, to, state)`` spans relative to ``start``; state is up, ejected or down."""
    # Active checks (health_down/up) and passive ejection (ejection/readmission) are separate
    # flags: a cloud is up only when neither holds it out.
    down_kinds = {"health_down": "down", "ejection": "ejected"}
    out: dict[str, list[tuple[float, float, str]]] = {}
    for cloud in clouds:
        spans: list[tuple[float, float, str]] = []
        state, since = "up", 0.0
        flags = {"down": False, "ejected": False}
        for ev in sorted((e for e in events if e.get("target") == cloud), key=lambda e: float(e["ts"])):
            t = max(0.0, min(end - start, float(ev["ts"]) - start))
            kind = ev.get("kind")
            if kind in down_kinds:
                flags[down_kinds[kind]] = True
            elif kind == "health_up":
                flags["down"] = False
            elif kind == "readmission":
                flags["ejected"] = False
            else:
                continue
            new = "down" if flags["down"] else "ejected" if flags["ejected"] else "up"
            if new != state:
                spans.append((since, t, state))
                state, since = new, t
        spans.append((since, end - start, state))
        out[cloud] = [s for s in spans if s[1] > s[0]]
    return out


def markers_from(events: Sequence[dict[str, Any]], drill_marks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drill marks (fault, repair) plus the router events worth a vertical line, by time."""
    marks = list(drill_marks)
    for ev in events:
        if ev.get("kind") in MARKER_KINDS:
            marks.append({"ts": float(ev["ts"]), "kind": ev["kind"], "target": ev.get("target"),
                          "detail": ev.get("detail")})
    return sorted(marks, key=lambda m: m["ts"])


def _plot(path: Path, series: dict[str, Any], clouds: Sequence[str], health: dict[str, list[tuple[float, float, str]]],
          marks: Sequence[dict[str, Any]], start: float, end_rel: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    t = series["t"]
    fig, axes = plt.subplots(4, 1, figsize=(11, 9.5), sharex=True,
                             gridspec_kw={"height_ratios": [3, 1.3, 2, 1.2]})
    ax_rps, ax_err, ax_lat, ax_health = axes
    widths = series.get("width", [1.0] * len(t))
    bottom = [0.0] * len(t)
    for cloud in clouds:
        values = [v / w for v, w in zip(series["rps"].get(cloud, [0] * len(t)), widths)]
        ax_rps.bar(t, values, bottom=bottom, width=widths, align="edge", color=_color(cloud, clouds), label=cloud,
                   edgecolor="none")
        bottom = [b + v for b, v in zip(bottom, values)]
    ax_rps.set_ylabel("answers/s\nper cloud")
    ax_rps.legend(loc="upper right", ncols=len(clouds), fontsize=8)
    ax_rps.set_title(title, fontsize=11)

    ax_err.bar(t, [e / w for e, w in zip(series["errors"], widths)], width=widths, align="edge", color="#d62728")
    ax_err.set_ylabel("client\nerrors/s")
    if not any(series["errors"]):
        ax_err.set_ylim(0, 1)
        ax_err.text(0.01, 0.5, "no client errors", transform=ax_err.transAxes, va="center", fontsize=8,
                    color="#2ca02c")

    mid = [x + 0.5 for x in t]
    for key, style in (("p50_ms", "-"), ("p99_ms", "--")):
        pts = [(x, y) for x, y in zip(mid, series[key]) if y is not None]
        if pts:
            ax_lat.plot([p[0] for p in pts], [p[1] for p in pts], style, color="#333333", label=key.replace("_", " "))
    ax_lat.set_yscale("log")
    # 1-2-5 ticks: a drill's latencies often span less than a decade, where 10^n ticks show one label.
    ax_lat.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    plain = matplotlib.ticker.FuncFormatter(lambda v, _pos: f"{v:g}")
    ax_lat.yaxis.set_major_formatter(plain)
    ax_lat.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax_lat.set_ylabel("client\nlatency (ms)")
    if ax_lat.get_lines():
        ax_lat.legend(loc="upper right", fontsize=8)

    state_color = {"up": "#2ca02c", "ejected": "#ff7f0e", "down": "#d62728"}
    for row, cloud in enumerate(clouds):
        spans = health.get(cloud, [])
        for state in ("up", "ejected", "down"):
            bars = [(a, b - a) for a, b, s in spans if s == state]
            if bars:
                ax_health.broken_barh(bars, (row - 0.35, 0.7), facecolors=state_color[state])
    ax_health.set_yticks(range(len(clouds)), list(clouds))
    ax_health.set_ylim(-0.6, len(clouds) - 0.4)
    ax_health.invert_yaxis()
    ax_health.set_ylabel("health\n(router)")
    ax_health.set_xlabel("seconds since traffic started   (green up · orange ejected · red down)")

    # One legend entry per marker kind and target (first occurrence), with its time: labels
    # drawn on the plot would overlap, since fault, ejection and failover land within ms.
    handles, labels, seen = [], [], set()
    for m in marks:
        x = float(m["ts"]) - start
        color, style = _MARKER_STYLE.get(m["kind"], ("#7f7f7f", ":"))
        for ax in axes:
            line = ax.axvline(x, color=color, linestyle=style, linewidth=1.2, alpha=0.9)
        key = (m["kind"], m.get("target"))
        if key not in seen:
            seen.add(key)
            handles.append(line)
            labels.append(f"{x:6.2f} s  {m['kind']}" + (f" {m['target']}" if m.get("target") else ""))
    if handles:
        fig.legend(handles, labels, loc="lower center", ncols=min(4, len(handles)), fontsize=7.5, frameon=False,
                   title="markers (router event log and drill actions)", title_fontsize=8)
    ax_health.set_xlim(0, max(1.0, end_rel))
    rows = (len(handles) + 3) // 4 if handles else 0
    fig.tight_layout(rect=(0, 0.022 * rows + (0.025 if rows else 0), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _html(report: dict[str, Any], png: Path, marks: Sequence[dict[str, Any]], start: float) -> str:
    esc = html.escape
    image = base64.b64encode(png.read_bytes()).decode()
    verdict = "PASSED" if report["passed"] else "FAILED"
    color = "#2ca02c" if report["passed"] else "#d62728"
    rows = "".join(
        f"<tr><td>{esc(c['objective'])}</td><td>{esc(str(c['limit']))}</td><td>{esc(str(c['value']))}</td>"
        f"<td style='color:{'#2ca02c' if c['passed'] else '#d62728'}'>{'pass' if c['passed'] else 'MISSED'}</td>"
        f"<td>{esc(c['message'])}</td></tr>" for c in report["checks"])
    ev_rows = "".join(
        f"<tr><td>{float(m['ts']) - start:+.3f} s</td><td>{esc(datetime.fromtimestamp(float(m['ts']), UTC).isoformat(timespec='milliseconds'))}</td>"
        f"<td>{esc(str(m['kind']))}</td><td>{esc(str(m.get('target') or ''))}</td>"
        f"<td>{esc(json.dumps(m.get('detail')) if m.get('detail') else '')}</td></tr>" for m in marks)
    meas = report["measures"]
    summary = {
        "scenario": report["scenario"], "runtime": report["runtime"], "policy": report.get("policy"),
        "requests": meas["requests"], "client errors": meas["client_errors"],
        "RTO (s)": meas["rto_seconds"], "failback (s)": meas["failback_seconds"],
        "router detection (s)": meas["detection_seconds"], "latency ms (p50/p99)":
        f"{meas['latency_ms'].get('p50')} / {meas['latency_ms'].get('p99')}",
        "answered by": ", ".join(f"{c} {n}" for c, n in meas["served_by"].items()) or "-",
    }
    sum_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in summary.items())
    def cell(value: Any) -> str:
        return "-" if value is None else esc(str(value))

    cost_rows = "".join(
        "<tr>" + "".join(f"<td>{cell(c.get(k))}</td>" for k in ("name", "requests", "p50_ms", "p95_ms", "p99_ms",
                                                                 "cost_per_hour", "cost_per_1k_requests")) + "</tr>"
        for c in report.get("clouds", []))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mco drill {esc(report['scenario'])}: {verdict}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:14px}}h1 span{{color:{color}}}</style></head>
<body><h1>Drill <code>{esc(report['scenario'])}</code>: <span>{verdict}</span></h1>
<p>{esc(report.get('description', ''))}</p>
<table>{sum_rows}</table>
<h2>Objectives</h2><table><tr><th>objective</th><th>limit</th><th>measured</th><th>result</th><th></th></tr>{rows}</table>
{_rollout_html(report.get("rollout"))}
<h2>Timeline</h2><img alt="drill timeline" style="max-width:100%" src="data:image/png;base64,{image}">
<h2>Events</h2><table><tr><th>t</th><th>time (UTC)</th><th>event</th><th>target</th><th>detail</th></tr>{ev_rows}</table>
<h2>Per cloud (router)</h2><table><tr><th>cloud</th><th>requests</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th>
<th>cost / hour</th><th>cost / 1k requests</th></tr>{cost_rows}</table>
<p>Raw client records: <code>requests.csv</code>; router events: <code>events.json</code>.</p>
</body></html>
"""


def rollout_line(rollout: dict[str, Any] | None) -> str | None:
    """One line on a release the drill made in waves: where it stopped and why, or that it went through."""
    if not rollout:
        return None
    at = rollout.get("stopped_at")
    if not at:
        return f"the waves rollout went through: {rollout.get('status')}"
    step = f", {at['step']} % step" if at.get("step") is not None else ""
    return f"stopped at wave {at['wave']} ({', '.join(at.get('clouds') or [])}{step}): {at.get('reason')}"


def _rollout_html(rollout: dict[str, Any] | None) -> str:
    """The waves a drill's release went through: each step's verdict and measured values."""
    if not rollout:
        return ""
    esc = html.escape
    rows = []
    for wave in rollout.get("waves", []):
        for step in wave.get("steps", []) or [{}]:
            measured = ", ".join(
                f"{m}={v:.4g}" if isinstance(v, (int, float)) else f"{m}=n/a"
                for m, v in (step.get("measured") or {}).items())
            verdict = step.get("verdict") or wave.get("status")
            color = {"passed": "#2ca02c", "failed": "#d62728"}.get(str(verdict), "#ff7f0e")
            rows.append(f"<tr><td>{esc(str(wave.get('wave')))}</td><td>{esc(', '.join(wave.get('clouds') or []))}</td>"
                        f"<td>{esc(str(step.get('percent', '-')))} %</td><td style='color:{color}'>{esc(str(verdict))}"
                        f"</td><td>{esc(measured or '-')}</td></tr>")
    never = rollout.get("never_touched") or []
    return (f"<h2>Rollout in waves</h2><p><b>{esc(rollout_line(rollout) or '')}</b></p>"
            f"<p>rules: <code>{esc(', '.join(rollout.get('rules') or []))}</code>"
            + (f"; never touched: {esc(', '.join(never))}" if never else "") + "</p>"
            "<table><tr><th>wave</th><th>clouds</th><th>step</th><th>verdict</th><th>measured</th></tr>"
            + "".join(rows) + "</table>")


def write_report(run_dir: Path, report: dict[str, Any], records: Sequence[RequestRecord],
                 events: Sequence[dict[str, Any]], drill_marks: Sequence[dict[str, Any]], *, start: float,
                 end: float, clouds: Sequence[str]) -> dict[str, str]:
    """Write every file of a drill report into ``run_dir``; returns their paths by kind."""
    run_dir.mkdir(parents=True, exist_ok=True)
    series = per_second(records, start, end, clouds)
    health = health_intervals(events, clouds, start, end)
    marks = markers_from(events, drill_marks)
    files = {"json": run_dir / "report.json", "png": run_dir / "timeline.png", "html": run_dir / "timeline.html",
             "csv": run_dir / "requests.csv", "events": run_dir / "events.json"}
    with open(files["csv"], "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sent_unix", "latency_s", "status", "cloud", "error", "model_digest", "error_detail"])
        for rec in records:
            writer.writerow(rec.as_row())
    files["events"].write_text(json.dumps(list(events), indent=1, default=str))
    report = {**report, "series": series, "markers": [{**m, "t": round(float(m["ts"]) - start, 4)} for m in marks],
              "files": {k: str(v) for k, v in files.items()}}
    title = (f"mco drill {report['scenario']} ({report['runtime']}, policy {report.get('policy')}): "
             f"{'passed' if report['passed'] else 'FAILED'}")
    stopped = rollout_line(report.get("rollout"))
    if stopped:
        title += "\n" + stopped
    _plot(files["png"], series, clouds, health, marks, start, end - start, title)
    files["html"].write_text(_html(report, files["png"], marks, start))
    files["json"].write_text(json.dumps(report, indent=2, default=str))
    return {k: str(v) for k, v in files.items()}
