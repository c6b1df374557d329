"""``mco monitor``: the per-cloud table, and the report (PNG + HTML) of drift and live F1 over time.

The routers compute; this module only arranges what their admin API returns
(``/admin/live`` now, ``/admin/live/series`` over time) and draws it.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.plotting import pyplot, save_panels

__all__ = ["monitor_rows", "write_monitor_report"]


def monitor_rows(live: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per cloud and release: class distribution against the training priors, drift,
    live metrics and feedback count."""
    rows = []
    for g in sorted(live.get("groups", []), key=lambda g: (g["cloud"], g["release"])):
        m = g.get("metrics", {})
        dist, prior = g.get("class_distribution") or {}, g.get("training_distribution") or {}
        # the classes that moved most, with their live and training shares
        moved = sorted(dist, key=lambda c: -abs(dist[c] - prior.get(c, 0.0)))[:3]
        rows.append({
            "cloud": g["cloud"], "release": g["release"], "requests": g["requests"], "feedback": g.get("feedback", 0),
            "error_rate": m.get("error_rate"), "p95_ms": m.get("p95_ms"),
            "class_drift_psi": m.get("class_drift_psi"), "proba_drift_psi": m.get("proba_drift_psi"),
            "peer_class_drift_psi": m.get("peer_class_drift_psi"),
            "peers": [f"{p['cloud']}/{p['release']}" for p in g.get("peers", [])],
            "drifting": g.get("drift", []), "live_accuracy": m.get("live_accuracy"),
            "live_macro_f1": m.get("live_macro_f1"),
            "class_shift": {c: {"live": round(dist[c], 4), "training": round(prior.get(c, 0.0), 4)} for c in moved},
        })
    return rows


def _num(values: list[Any]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def write_monitor_report(series: dict[str, Any], live: dict[str, Any], out_dir: Path) -> dict[str, str]:
    plt = pyplot(extra="router", purpose="monitor reports")
    out_dir.mkdir(parents=True, exist_ok=True)
    points = series.get("points", [])
    t0 = points[0]["t"] if points else 0.0
    lines: dict[tuple[str, str], dict[str, list[Any]]] = {}
    for p in points:
        for g in p["groups"]:
            line = lines.setdefault((g["cloud"], g["release"]), {"t": [], "psi": [], "f1": []})
            line["t"].append(p["t"] - t0)
            line["psi"].append(g.get("class_drift_psi"))
            line["f1"].append(g.get("live_macro_f1"))
    fig, (ax_psi, ax_f1) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for (cloud, release), line in sorted(lines.items()):
        drawn, = ax_psi.plot(line["t"], _num(line["psi"]), label=f"{cloud} (release {release})")
        ax_f1.plot(line["t"], _num(line["f1"]), color=drawn.get_color(), label=f"{cloud} (release {release})")
    threshold = series.get("drift_threshold")
    if threshold:
        ax_psi.axhline(threshold, color="red", linestyle="--", linewidth=1, label=f"drift threshold {threshold:g}")
    ax_psi.set_ylabel("class drift (PSI)")
    ax_f1.set_ylabel("live macro F1")
    ax_f1.set_ylim(0, 1.02)
    ax_f1.set_xlabel("seconds since the first sample")
    png = out_dir / "monitor-report.png"
    save_panels(fig, (ax_psi, ax_f1), png, title="mco monitor: prediction drift and live F1 per cloud",
                legend_columns=2)
    page = out_dir / "monitor-report.html"
    page.write_text(_html(monitor_rows(live), png.name, len(points)))
    return {"png": str(png), "html": str(page)}


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, dict | list):
        return html.escape(json.dumps(v))
    return html.escape(str(v))


def _html(rows: list[dict[str, Any]], png: str, n_points: int) -> str:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    cols = ("cloud", "release", "requests", "feedback", "error_rate", "p95_ms", "class_drift_psi", "proba_drift_psi",
            "peer_class_drift_psi", "peers", "live_accuracy", "live_macro_f1", "drifting", "class_shift")
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>mco monitor report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}</style></head>
<body><h1>mco monitor report</h1><p>Generated {now} from {n_points} samples.</p>
<h2>Now</h2><table><tr>{"".join(f"<th>{c}</th>" for c in cols)}</tr>{body}</table>
<h2>Over time</h2><img src="{html.escape(png)}" alt="drift and live F1 per cloud" style="max-width:100%">
</body></html>
"""
