"""Drills through the global entry (``region-loss``, ``router-crash``): the traffic goes to the
entry (HAProxy locally), and what the drill's own router would report comes from the routers
inside the clusters, read through their admin APIs and added up.

``EntryRouters`` has the two calls the runner makes of its router, ``status()`` and
``events()``: the targets summed over every router that answers (requests and errors added,
``healthy`` when any router sees the target healthy, the highest percentiles), and every
router's events in time order, each naming its ``router``. A router that does not answer
(its cloud is the one the drill took away) is left out, never an error.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["EntryRouters"]


class EntryRouters:
    def __init__(self, router_urls: list[str], token: str, *, timeout_s: float = 2.0) -> None:
        self.urls = router_urls
        self.token = token
        self.timeout_s = timeout_s

    def _get(self, url: str, path: str) -> Any | None:
        try:
            resp = httpx.get(url + path, headers={"Authorization": f"Bearer {self.token}"}, timeout=self.timeout_s)
        except httpx.HTTPError:
            return None
        return resp.json() if resp.status_code == 200 else None

    def status(self) -> dict[str, Any]:
        docs = [d for d in (self._get(u, "/admin/status") for u in self.urls) if d is not None]
        targets: dict[str, dict[str, Any]] = {}
        for doc in docs:
            for t in doc.get("targets", []):
                row = targets.setdefault(t["name"], {"name": t["name"], "healthy": False, "requests": 0,
                                                     "errors": {}, "pricing_key": t.get("pricing_key"),
                                                     "p50_ms": None, "p95_ms": None, "p99_ms": None,
                                                     "cost_per_hour": t.get("cost_per_hour"),
                                                     "cost_per_1k_requests": t.get("cost_per_1k_requests")})
                row["healthy"] = row["healthy"] or bool(t.get("healthy"))
                row["requests"] += int(t.get("requests") or 0)
                for kind, n in (t.get("errors") or {}).items():
                    row["errors"][kind] = row["errors"].get(kind, 0) + n
                for q in ("p50_ms", "p95_ms", "p99_ms"):
                    if t.get(q) is not None:
                        row[q] = max(row[q] or 0.0, t[q])
        return {"routers": [d.get("router") for d in docs], "targets": list(targets.values())}

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for url in self.urls:
            doc = self._get(url, "/admin/events")
            if doc is None:
                continue
            status = self._get(url, "/admin/status") or {}
            out += [{**e, "router": status.get("router") or url} for e in doc.get("events", [])]
        return sorted(out, key=lambda e: float(e["ts"]))
