"""The data plane: a bare ASGI app that forwards each request to the best healthy target.

Per request the hot path does only this: read the body (bounded), filter hop-by-hop
headers, ask the balancer for its cached candidate order, send, and on a failure retry
once on the next candidate within the retry budget. Health checks, outlier timers,
percentiles, costs and the time series run beside it (``Router.startup`` starts them).

Failures and what the client sees:

* connect refused / reset (even mid-response) / per-try timeout, and upstream 5xx:
  retried on the next healthy cloud (predict is idempotent) when the budget allows;
* upstream 4xx: passed through unchanged, never retried, never counted against the target;
* every proxied request is treated as idempotent (the model server's API is: predict,
  health, card, metrics), so it may be retried or hedged;
* body larger than ``max_body_bytes``: 413 from the router, nothing sent upstream;
* every try failed: the last upstream 5xx as it was, or 502 naming each try, or 503
  when every target is down (panic: all targets were tried in priority order anyway).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from orchestrator.config import RouterConfig, RouterTargetConfig
from orchestrator.errors import ConfigError
from orchestrator.router.accounting import CostModel, TargetStats, percentile
from orchestrator.router.balancer import Balancer, TargetState
from orchestrator.router.events import EventLog
from orchestrator.router.health.active import ActiveChecker
from orchestrator.router.health.passive import OutlierDetector
from orchestrator.router.retries import RetryBudget, backoff
from orchestrator.router.upstream import HOP_BY_HOP, UpstreamError, make_upstream

__all__ = ["Router", "RouterApp", "build_router"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_SERIES_STEP_S = 2.0
_SERIES_POINTS = 1800  # one hour
_WINDOW_S = 10.0


class _TooLarge(Exception):
    pass


class Router:
    """Everything the data plane and the admin API share."""

    def __init__(self, cfg: RouterConfig, *, token: str | None = None, config_path: Path | None = None,
                 client: str = "aiohttp") -> None:
        self.cfg = cfg
        self.token = token.encode() if token else None
        self.config_path = config_path
        self.started = time.time()
        self.events = EventLog(path=cfg.events_file)
        self.balancer = Balancer([self._state(t, i) for i, t in enumerate(cfg.targets)], cfg.policy, self.events,
                                 slo_p95_s=cfg.slo_p95_ms / 1000)
        self._check_unique(cfg.targets)
        self.active = ActiveChecker(cfg.health, self.balancer.sink("active"), self.events)
        self.passive = OutlierDetector(cfg.outlier, self.balancer.sink("passive"), self.events)
        self.passive.update([t.name for t in cfg.targets])
        self.budget = RetryBudget(ratio=cfg.retries.budget_ratio, min_per_s=cfg.retries.budget_min_per_s)
        self.upstream = make_upstream(client, per_try_timeout_s=cfg.retries.per_try_timeout_s,
                                      connect_timeout_s=cfg.retries.connect_timeout_s)
        self.overall = TargetStats()  # what clients saw, retries included
        self.client_errors = {"body_too_large": 0, "all_failed": 0, "no_target": 0}
        self.series: dict[str, list[tuple[float, ...]]] = {}
        self._history: dict[str, list[tuple[float, int, int, list[int], int]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.handle_sighup = False

    @staticmethod
    def _check_unique(targets: list[RouterTargetConfig]) -> None:
        names = [t.name for t in targets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"router targets must have unique names; repeated: {', '.join(dupes)}",
                              hint="rename the targets so each cloud appears once")

    @staticmethod
    def _state(t: RouterTargetConfig, index: int) -> TargetState:
        return TargetState(cfg=t, index=index,
                           cost=CostModel.for_target(t.pricing_key, vcpu=t.vcpu, memory_gb=t.memory_gb,
                                                     replicas=t.replicas))

    # -- lifecycle ------------------------------------------------------------------
    async def startup(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.upstream.start()
        await self.active.start({t.name: t.cfg.url for t in self.balancer.by_priority})
        self._tasks.append(self.loop.create_task(self._sample_forever(), name="router-sampler"))
        if self.handle_sighup and threading.current_thread() is threading.main_thread():
            self.loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self) -> None:
        try:
            self.reload_from_file()
        except Exception as exc:  # a bad edit must not kill a serving router
            self.events.emit("targets_reloaded", None, error=str(exc))

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.passive.stop()
        await self.active.stop()
        await self.upstream.close()

    # -- hot reload -----------------------------------------------------------------
    def set_targets(self, targets: list[RouterTargetConfig]) -> None:
        """Replace the targets; ones with the same name and URL keep their stats and health."""
        self._check_unique(targets)
        old = self.balancer.targets
        states: list[TargetState] = []
        for i, t in enumerate(targets):
            prev = old.get(t.name)
            if prev is not None and prev.cfg.url == t.url:
                prev.cfg, prev.index = t, i
                prev.cost = self._state(t, i).cost
                states.append(prev)
            else:
                states.append(self._state(t, i))
        self.passive.update([t.name for t in targets])
        self.balancer.replace_targets(states)
        if self.loop is not None:
            self.active.update({t.name: t.url for t in targets})
        self.events.emit("targets_reloaded", None, targets=[t.name for t in targets])

    def reload_from_file(self) -> None:
        if self.config_path is None:
            raise ConfigError("this router was not started from a config file, so there is nothing to re-read",
                              hint="use PUT /admin/targets instead")
        from orchestrator.config import load_config
        from orchestrator.router.settings import targets_from_config

        self.set_targets(targets_from_config(load_config(self.config_path)))

    # -- side work: windows, series ---------------------------------------------------
    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(_SERIES_STEP_S / 2)
            try:
                self.sample()
            except Exception:  # never let accounting kill the router
                pass

    def sample(self) -> None:
        now = time.time()
        for t in list(self.balancer.targets.values()) + [None]:
            name = t.name if t is not None else "__overall__"
            stats = t.stats if t is not None else self.overall
            snap = stats.snapshot()
            hist = self._history.setdefault(name, [])
            hist.append(snap)
            while len(hist) > 2 and snap[0] - hist[1][0] >= _WINDOW_S:
                hist.pop(0)
            first = hist[0]
            span = max(snap[0] - first[0], 1e-9)
            rps = (snap[1] - first[1]) / span if len(hist) > 1 else 0.0
            bps = (snap[2] - first[2]) / span if len(hist) > 1 else 0.0
            window = [a - b for a, b in zip(snap[3], first[3])] if len(hist) > 1 else snap[3]
            p50, p95, p99 = (percentile(window, q) for q in (0.5, 0.95, 0.99))
            if t is not None:
                t.recent_rps, t.recent_bytes_per_s, t.recent_p95_s = rps, bps, p95
                t.window = {"rps": round(rps, 2), "p50_ms": _ms(p50), "p95_ms": _ms(p95), "p99_ms": _ms(p99)}
            series = self.series.setdefault(name, [])
            if not series or now - series[-1][0] >= _SERIES_STEP_S * 0.99:
                errors = (snap[4] - first[4]) / span if len(hist) > 1 else 0.0
                cost_h = t.cost.per_hour(bps) if t is not None else None
                cost_k = t.cost.per_1k_requests(rps, bps) if t is not None else None
                healthy = (1.0 if t.healthy else 0.0) if t is not None else 1.0
                nan = float("nan")
                series.append((now, rps, _ms(p50) or nan, _ms(p95) or nan, _ms(p99) or nan, errors,
                               cost_h if cost_h is not None else float("nan"),
                               cost_k if cost_k is not None else float("nan"), healthy))
                if len(series) > _SERIES_POINTS:
                    del series[0]
        for name in [n for n in self._history if n != "__overall__" and n not in self.balancer.targets]:
            self._history.pop(name, None)
        if self.cfg.policy == "cost":
            self.balancer.refresh_policy()

    # -- reports ------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        rows = []
        total_cost_h = 0.0
        cost_known = True
        for t in self.balancer.by_priority:
            s = t.stats
            out = self.passive.state(t.name)
            check = self.active.state(t.name)
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
                "p50_ms": _ms(p50), "p95_ms": _ms(p95), "p99_ms": _ms(p99), "ewma_ms": _ms(s.ewma_s or None),
                "rps": round(t.recent_rps, 2), "window_10s": t.window,
                "cost_per_hour": _money(cost_h),
                "cost_per_1k_requests": _money(t.cost.per_1k_requests(t.recent_rps, t.recent_bytes_per_s)),
            })
        o = self.overall
        total_rps = sum(t.recent_rps for t in self.balancer.by_priority)
        return {
            "policy": self.cfg.policy,
            "uptime_s": round(time.time() - self.started, 1),
            "all_down": self.balancer.all_down,
            "active_target": self.balancer.healthy[0].name if self.balancer.healthy else None,
            "targets": rows,
            "overall": {
                "requests": o.requests, "client_errors": dict(self.client_errors),
                "p50_ms": _ms(percentile(o.counts, 0.5)), "p95_ms": _ms(percentile(o.counts, 0.95)),
                "p99_ms": _ms(percentile(o.counts, 0.99)),
                "cost_per_hour": _money(total_cost_h) if cost_known else None,
                "cost_per_1k_requests": _money(total_cost_h / (total_rps * 3600) * 1000)
                if cost_known and total_rps > 0 else None,
            },
            "retry_budget": self.budget.snapshot(),
        }

    def series_report(self) -> dict[str, Any]:
        cols = ["t", "rps", "p50_ms", "p95_ms", "p99_ms", "errors_per_s", "cost_per_hour", "cost_per_1k_requests",
                "healthy"]
        return {"columns": cols, "step_s": _SERIES_STEP_S,
                "targets": {name: [[None if isinstance(v, float) and v != v else v for v in row] for row in rows]
                            for name, rows in self.series.items()}}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _money(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _json_response(status: int, body: Any, extra: list[tuple[bytes, bytes]] | None = None
                   ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    return status, headers + (extra or []), payload


class RouterApp:
    """The ASGI callable. ``router`` holds the state; this class only moves bytes."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self._rng = random.Random()
        self._background: set[asyncio.Future[Any]] = set()
        from orchestrator.router import admin

        self._admin = admin.AdminApi(router)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path.startswith("/admin/") or path == "/metrics":
                await self._reply(send, *await self._admin.handle(scope, receive))
                return
            await self._proxy(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.router.startup()
                except Exception as exc:  # reported to uvicorn, which exits
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.router.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _reply(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        router = self.router
        started = time.perf_counter()
        limit = router.cfg.max_body_bytes

        # headers: drop hop-by-hop ones (and any the Connection header names), Host and
        # Content-Length (the upstream client sets both for the bytes it sends)
        headers: list[tuple[str, str]] = []
        connection: bytes | None = None
        declared: bytes | None = None
        for key, value in scope["headers"]:
            if key in HOP_BY_HOP:
                if key == b"connection":
                    connection = value
                continue
            if key == b"content-length":
                declared = value
                continue
            if key == b"host" or key == b"expect":  # the body is already read: no 100-continue upstream
                continue
            headers.append((key.decode("latin-1"), value.decode("latin-1")))
        if connection:
            named = {tok.strip().lower() for tok in connection.decode("latin-1").split(",")}
            headers = [(k, v) for k, v in headers if k.lower() not in named]

        try:
            if declared is not None and int(declared) > limit:
                raise _TooLarge
            body = await self._read_body(receive, limit)
        except _TooLarge:
            router.client_errors["body_too_large"] += 1
            await self._reply(send, *_json_response(413, {"error": f"request body is larger than {limit} bytes"},
                                                    [(b"connection", b"close")]))
            return
        except ValueError:
            await self._reply(send, *_json_response(400, {"error": "Content-Length is not a number"}))
            return

        raw_path = scope.get("raw_path") or scope["path"].encode()
        qs = scope.get("query_string")
        target = (raw_path + b"?" + qs if qs else raw_path).decode("latin-1")
        method = scope["method"]

        result = await self._forward(method, target, headers, body)
        status, resp_headers, payload, answered_by = result
        router.overall.observe(time.perf_counter() - started, len(payload))
        # an upstream may not speak for the router: its own x-mco-cloud is dropped, ours is added
        out = [(k, v) for k, v in resp_headers if k.lower() not in HOP_BY_HOP and k.lower() != b"x-mco-cloud"]
        if answered_by is not None:
            out.append((b"x-mco-cloud", answered_by.encode()))
        if not any(k.lower() == b"content-length" for k, _ in out):
            out.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": payload})

    @staticmethod
    async def _read_body(receive: Receive, limit: int) -> bytes:
        message = await receive()
        body = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > limit:
                raise _TooLarge
            return body
        chunks = [body]
        size = len(body)
        while message.get("more_body", False):
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    async def _try(self, target: TargetState, method: str, path: str, headers: list[tuple[str, str]],
                   body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes] | UpstreamError:
        """One try on one target, with its accounting. Returns the answer or the failure."""
        router = self.router
        t0 = time.perf_counter()
        try:
            status, resp_headers, payload = await router.upstream.send(target.cfg.url, method, path, headers, body)
        except UpstreamError as exc:
            target.stats.error(exc.kind, time.perf_counter() - t0)
            router.passive.failure(target.name, exc.kind)
            return exc
        elapsed = time.perf_counter() - t0
        if status >= 500:
            target.stats.error("http_5xx", elapsed)
            router.passive.failure(target.name, "http_5xx")
        else:
            target.stats.observe(elapsed, len(payload))
            if status >= 400:
                target.stats.responses_4xx += 1
            router.passive.success(target.name)
        return status, resp_headers, payload

    async def _forward(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
                       ) -> tuple[int, list[tuple[bytes, bytes]], bytes, str | None]:
        router = self.router
        retries = router.cfg.retries
        router.budget.request()
        candidates = router.balancer.candidates()
        if not candidates:
            router.client_errors["no_target"] += 1
            return (*_json_response(503, {"error": "the router has no targets configured"}), None)
        n = len(candidates)
        tried: list[dict[str, str]] = []
        last_5xx: tuple[int, list[tuple[bytes, bytes]], bytes, str] | None = None
        attempt = 0
        if retries.hedge and n > 1:
            outcome = await self._hedged(candidates, method, path, headers, body, tried)
            if isinstance(outcome, tuple) and outcome[0] < 500:
                return outcome
            if isinstance(outcome, tuple):
                last_5xx = outcome
            attempt = len(tried)  # tries already made; the loop below may still retry
        while attempt < retries.attempts:
            if attempt:
                if not router.budget.try_acquire():
                    break
                pause = backoff(attempt, base_s=retries.backoff_base_s, max_s=retries.backoff_max_s, rng=self._rng)
                if pause:
                    await asyncio.sleep(pause)
            target = candidates[attempt % n]
            if attempt:
                target.stats.retries += 1
            attempt += 1
            result = await self._try(target, method, path, headers, body)
            if isinstance(result, UpstreamError):
                tried.append({"target": target.name, "failure": result.kind})
                continue
            if result[0] >= 500:
                tried.append({"target": target.name, "failure": f"HTTP {result[0]}"})
                last_5xx = (*result, target.name)
                continue
            return (*result, target.name)
        router.client_errors["all_failed"] += 1
        if last_5xx is not None:
            return last_5xx
        if router.balancer.all_down:
            return (*_json_response(503, {"error": "no healthy cloud: every target is down", "tried": tried},
                                    [(b"retry-after", b"1")]), None)
        return (*_json_response(502, {"error": "no target answered", "tried": tried}), None)

    async def _hedged(self, candidates: tuple[TargetState, ...], method: str, path: str,
                      headers: list[tuple[str, str]], body: bytes, tried: list[dict[str, str]]
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes, str] | None:
        """First try; if it is slower than the target's p95, a second copy on the next cloud."""
        router = self.router
        first, second = candidates[0], candidates[1]
        # hedge after the target's recent p95; with no recent history, after a quarter of the per-try timeout
        p95 = first.recent_p95_s or percentile(first.stats.counts, 0.95)
        delay = max(router.cfg.retries.hedge_min_delay_s, p95 if p95 is not None else
                    router.cfg.retries.per_try_timeout_s / 4)
        tasks = {asyncio.ensure_future(self._try(first, method, path, headers, body)): first}
        done, _ = await asyncio.wait(tasks, timeout=delay)
        if not done and router.budget.try_acquire():
            second.stats.hedges += 1
            tasks[asyncio.ensure_future(self._try(second, method, path, headers, body))] = second
        elif done and isinstance(next(iter(done)).result(), UpstreamError) and router.budget.try_acquire():
            second.stats.retries += 1
            tasks[asyncio.ensure_future(self._try(second, method, path, headers, body))] = second
        pending = set(tasks)
        last: tuple[int, list[tuple[bytes, bytes]], bytes, str] | None = None
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    result, target = task.result(), tasks[task]
                    if isinstance(result, UpstreamError):
                        tried.append({"target": target.name, "failure": result.kind})
                    elif result[0] >= 500:
                        tried.append({"target": target.name, "failure": f"HTTP {result[0]}"})
                        last = (*result, target.name)
                    else:
                        return (*result, target.name)
        finally:
            # The losing try runs on to its answer or its per-try timeout (its result is dropped):
            # cancelling it would hide a hung target from outlier detection, so it would never be ejected.
            for task in pending:
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        return last


def build_router(cfg: RouterConfig, *, token: str | None = None, config_path: Path | None = None,
                 client: str = "aiohttp") -> tuple[RouterApp, Router]:
    router = Router(cfg, token=token, config_path=config_path, client=client)
    return RouterApp(router), router


def check_token(router: Router, authorization: bytes | None) -> bool:
    if router.token is None or not authorization or not authorization.startswith(b"Bearer "):
        return False
    return hmac.compare_digest(authorization[7:].strip(), router.token)
