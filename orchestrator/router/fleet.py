"""``mco router status --all``: every cloud's routers, read through their admin APIs, as one
table of router by cloud.

Each router answers ``GET /admin/status`` (with the admin token); the rows are that
router's view of each cloud it routes to: requests, errors, p50/p95/p99 and cost (per
hour, and egress so far). Routers are read in parallel, each within ``timeout_s``; one
that does not answer is a row saying why, never a failure of the whole view.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["read_fleet"]


def _read_one(cloud: str, url: str, token: str, timeout_s: float, verify: Any) -> dict[str, Any]:
    import httpx

    row: dict[str, Any] = {"cloud": cloud, "url": url, "router": None, "reachable": False, "error": None,
                           "targets": []}
    try:
        resp = httpx.get(url + "/admin/status", headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s,
                         verify=verify)
    except httpx.HTTPError as exc:
        row["error"] = f"unreachable: {type(exc).__name__}"
        return row
    if resp.status_code == 401:
        row["error"] = "the admin token was refused"
        return row
    if resp.status_code != 200:
        row["error"] = f"HTTP {resp.status_code}"
        return row
    doc = resp.json()
    row.update(reachable=True, router=doc.get("router"), policy=doc.get("policy"), router_cloud=doc.get("cloud"),
               workers=len(doc.get("workers") or []) or 1, overall=doc.get("overall", {}))
    for t in doc.get("targets", []):
        row["targets"].append({
            "cloud": t["name"], "healthy": t["healthy"], "local": t.get("local", False),
            "requests": t["requests"], "errors": sum(t["errors"].values()),
            "p50_ms": t["p50_ms"], "p95_ms": t["p95_ms"], "p99_ms": t["p99_ms"],
            "cost_per_hour": t.get("cost_per_hour"), "egress_usd": t.get("egress_usd"),
        })
    return row


def read_fleet(routers: list[tuple[str, str]], *, token: str, timeout_s: float = 3.0,
               verify: Any = True) -> dict[str, Any]:
    """``routers``: (cloud, admin base URL) pairs. Returns every router's rows and the totals per cloud."""
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(routers)))) as pool:
        rows = list(pool.map(lambda r: _read_one(r[0], r[1], token, timeout_s, verify), routers))
    totals: dict[str, dict[str, Any]] = {}
    for row in rows:
        for t in row["targets"]:
            tot = totals.setdefault(t["cloud"], {"requests": 0, "errors": 0, "cost_per_hour": 0.0,
                                                 "egress_usd": 0.0})
            tot["requests"] += t["requests"]
            tot["errors"] += t["errors"]
            # each router prices the same cloud's replicas: the compute cost is counted once
            tot["cost_per_hour"] = max(tot["cost_per_hour"], t["cost_per_hour"] or 0.0)
            tot["egress_usd"] += t["egress_usd"] or 0.0
    return {"routers": rows, "totals": totals,
            "reachable": sum(1 for r in rows if r["reachable"]), "total": len(rows)}
