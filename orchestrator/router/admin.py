"""The admin API and ``/metrics``. Admin calls need ``Authorization: Bearer TOKEN``.

    GET  /metrics           Prometheus text, no token
    GET  /admin/status      per-target counters, percentiles, health, cost
    GET  /admin/events      the event log (``?since=SEQ`` for the newer ones)
    GET  /admin/series      time series for ``mco router report``
    GET  /admin/targets     the current targets
    PUT  /admin/targets     replace the targets: {"targets": [{name, url, priority, weight, pricing_key}]}
    POST /admin/reload      re-read the config file (same as SIGHUP)
    GET  /admin/weights     each target's weight, the release it serves, and the policy
    PUT  /admin/weights     {"weights": {"aws": 10}, "releases": {"aws": "7"}, "models": {"aws": DIGEST}}:
                            shares move, stats stay; a release's live metrics count its model's answers only
    GET  /admin/live        live metrics per cloud and release over ``?window_s=`` (feedback.py)
    GET  /admin/live/series drift and live F1 per cloud/release at each refresh (``mco monitor --report``)
"""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from pydantic import ValidationError

from orchestrator.errors import MCOError
from orchestrator.router.asgi import Receive, Reply, Scope, json_reply
from orchestrator.router.metrics import render_metrics
from orchestrator.router.report import series_report, status_report
from orchestrator.router.workers import SECRET_HEADER, merged_view, worker_state

RUST_SECRET_HEADER = b"x-mco-dataplane-secret"  # (rust.py's SECRET_HEADER, without importing it here)

if TYPE_CHECKING:
    from orchestrator.router.state import Router

__all__ = ["AdminApi", "check_token"]

_MAX_ADMIN_BODY = 256 * 1024


def _json(status: int, body: Any) -> Reply:
    return json_reply(status, body, (b"cache-control", b"no-store"))


def check_token(expected: bytes | None, authorization: bytes | None) -> bool:
    """True when ``authorization`` is ``Bearer <expected>``; always False for a router without a token."""
    if expected is None or not authorization or not authorization.startswith(b"Bearer "):
        return False
    return hmac.compare_digest(authorization[7:].strip(), expected)


class AdminApi:
    def __init__(self, router: Router) -> None:
        self.router = router

    async def handle(self, scope: Scope, receive: Receive) -> Reply:
        path, method = scope["path"], scope["method"]
        worker = self.router.worker
        if path == "/admin/worker-state" and worker is not None:
            # a peer worker adding up all workers (workers.py): its own secret, not the admin token
            secret = next((v for k, v in scope["headers"] if k == SECRET_HEADER), None)
            if not worker.peer_ok(secret):
                return _json(401, {"error": "worker-state is for the router's own workers"})
            return _json(200, worker_state(self.router))
        link = self.router.rust_link
        if path == "/admin/dataplane/report" and link is not None and method == "POST":
            # the Rust data plane's reports (rust.py): its own secret, not the admin token
            secret = next((v for k, v in scope["headers"] if k == RUST_SECRET_HEADER), None)
            return link.handle(secret, await receive_all(receive))
        if path == "/admin/dataplane/table" and link is not None and method == "GET":
            secret = next((v for k, v in scope["headers"] if k == RUST_SECRET_HEADER), None)
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            have = query.get("version", ["0"])[0]
            return await link.watch(secret, int(have) if have.isdigit() else 0)
        if path == "/metrics":
            view, _ = await merged_view(self.router)
            body, content_type = render_metrics(view)
            return 200, [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())], body
        auth = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if not check_token(self.router.token, auth):
            status, headers, body = _json(401, {"error": "admin calls need 'Authorization: Bearer TOKEN'",
                                                "hint": "the token is in $MCO_ROUTER_TOKEN or router.token_file"})
            return status, headers + [(b"www-authenticate", b'Bearer realm="mco-router"')], body
        routes = {
            ("GET", "/admin/status"): self._status,
            ("GET", "/admin/events"): self._events,
            ("GET", "/admin/series"): self._series,
            ("GET", "/admin/targets"): self._targets,
            ("PUT", "/admin/targets"): self._put_targets,
            ("POST", "/admin/reload"): self._reload,
            ("GET", "/admin/live"): self._live,
            ("GET", "/admin/live/series"): self._live_series,
            ("GET", "/admin/weights"): self._weights,
            ("PUT", "/admin/weights"): self._put_weights,
        }
        handler = routes.get((method, path))
        if handler is None:
            allowed = [m for m, p in routes if p == path]
            if allowed:
                return _json(405, {"error": f"{method} is not allowed on {path}; use {', '.join(allowed)}"})
            return _json(404, {"error": f"no admin endpoint {path}",
                               "endpoints": sorted({p for _, p in routes})})
        try:
            body = await self._body(receive)
            return await handler(scope, body)
        except _BadRequest as exc:
            return _json(400, {"error": str(exc)})
        except MCOError as exc:
            return _json(400, {"error": exc.message, "hint": exc.hint})

    @staticmethod
    async def _body(receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > _MAX_ADMIN_BODY:
                raise _BadRequest(f"admin request body is larger than {_MAX_ADMIN_BODY} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _status(self, scope: Scope, body: bytes) -> Reply:
        view, workers = await merged_view(self.router)
        doc = status_report(view)
        doc["router"] = self.router.name
        doc["cloud"] = self.router.cfg.cloud
        if workers:  # --workers N: the sums of every worker, and each one's reachability and load
            doc["workers"] = workers
            for row in doc["targets"]:
                row["healthy_workers"] = view.healthy_workers.get(row["name"], 0)
        return _json(200, doc)

    async def _events(self, scope: Scope, body: bytes) -> Reply:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            since = int(query.get("since", ["0"])[0])
        except ValueError:
            raise _BadRequest("'since' must be an event sequence number") from None
        return _json(200, {"events": [e.to_dict() for e in self.router.events.since(since)]})

    async def _series(self, scope: Scope, body: bytes) -> Reply:
        return _json(200, series_report(self.router.sampler))

    async def _targets(self, scope: Scope, body: bytes) -> Reply:
        return _json(200, {"targets": [t.cfg.model_dump(mode="json") for t in self.router.balancer.by_priority]})

    async def _put_targets(self, scope: Scope, body: bytes) -> Reply:
        from orchestrator.config import RouterTargetConfig

        try:
            doc = json.loads(body or b"null")
        except ValueError as exc:
            raise _BadRequest(f"body is not JSON: {exc}") from None
        except RecursionError:
            raise _BadRequest("body is nested too deeply to be a list of targets") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("targets"), list):
            raise _BadRequest('body must be {"targets": [{"name", "url", "priority", "weight", "pricing_key"}, ...]}')
        try:
            targets = [RouterTargetConfig.model_validate(t) for t in doc["targets"]]
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise _BadRequest(f"target field '{where}': {first['msg']}") from None
        self.router.set_targets(targets)
        return await self._targets(scope, b"")

    async def _weights(self, scope: Scope, body: bytes) -> Reply:
        router = self.router
        kept = router.kept
        targets = router.balancer.by_priority
        return _json(200, {"policy": router.cfg.policy,
                           "weights": {t.name: t.cfg.weight for t in targets},
                           "priorities": {t.name: t.cfg.priority for t in targets},
                           "releases": dict(kept.release_of) if kept is not None else {}})

    async def _put_weights(self, scope: Scope, body: bytes) -> Reply:
        try:
            doc = json.loads(body or b"null")
        except (ValueError, RecursionError):
            raise _BadRequest("body is not JSON") from None
        if not isinstance(doc, dict) or not set(doc) <= {"weights", "releases", "models"} or not doc:
            raise _BadRequest('body must be {"weights": {"TARGET": 0..1000}, "releases": {"TARGET": "LABEL"}, '
                              '"models": {"TARGET": "MODEL DIGEST"}}')
        weights, releases = doc.get("weights") or {}, doc.get("releases") or {}
        models = doc.get("models") or {}
        if not isinstance(models, dict) or not all(isinstance(m, str) and m for m in models.values()):
            raise _BadRequest("each model must be a non-empty digest string")
        if not isinstance(weights, dict) or not all(
                isinstance(w, int) and not isinstance(w, bool) and 0 <= w <= 1000 for w in weights.values()):
            raise _BadRequest("each weight must be an integer from 0 to 1000")
        if not isinstance(releases, dict) or not all(isinstance(r, str) and r for r in releases.values()):
            raise _BadRequest("each release must be a non-empty string")
        self.router.set_weights(weights, releases, models)
        return await self._weights(scope, b"")

    async def _live_series(self, scope: Scope, body: bytes) -> Reply:
        kept = self.router.kept
        if kept is None:
            return _json(404, {"error": "this router keeps no predictions (router.feedback.keep is 0)"})
        return _json(200, {"refresh_s": self.router.cfg.feedback.refresh_s,
                           "drift_threshold": self.router.cfg.feedback.drift_threshold, "points": list(kept.series)})

    async def _live(self, scope: Scope, body: bytes) -> Reply:
        kept = self.router.kept
        if kept is None:
            return _json(404, {"error": "this router keeps no predictions (router.feedback.keep is 0)"})
        fb = self.router.cfg.feedback
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            window_s = float(query.get("window_s", [str(fb.window_s)])[0])
        except ValueError:
            raise _BadRequest("'window_s' must be a number of seconds") from None
        if not window_s > 0:
            raise _BadRequest("'window_s' must be more than 0")
        return _json(200, await kept.snapshot(window_s, drift_threshold=fb.drift_threshold))

    async def _reload(self, scope: Scope, body: bytes) -> Reply:
        self.router.reload_from_file()
        return await self._targets(scope, b"")


async def receive_all(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class _BadRequest(Exception):
    pass
