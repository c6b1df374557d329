"""The data plane: a bare ASGI app that forwards each request to the best healthy target.

Per request the hot path does only this: read the body (bounded), filter hop-by-hop
headers, ask the balancer for its cached candidate order, send, and on a failure retry
once on the next candidate within the retry budget. Health checks, outlier timers,
percentiles, costs and the time series run beside it (``Router.startup`` in
``state.py`` starts them; ``sampler.py`` keeps the windows and series, ``report.py``
builds the admin reports from them).

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
import random
import time
from pathlib import Path
from typing import Any, NamedTuple

from orchestrator.config import RouterConfig
from orchestrator.router.accounting import percentile
from orchestrator.router.admin import AdminApi
from orchestrator.router.asgi import (
    Headers,
    Receive,
    Reply,
    Scope,
    Send,
    json_reply,
    send_reply,
)
from orchestrator.router.balancer import TargetState
from orchestrator.router.headers import CLOUD_HEADER_BYTES
from orchestrator.router.retries import backoff
from orchestrator.router.state import Router
from orchestrator.router.upstream import HOP_BY_HOP, UpstreamError

__all__ = ["Answer", "RouterApp", "build_router"]


class Answer(NamedTuple):
    """What the client gets for one proxied request, and the target that answered (None: the router did)."""

    status: int
    headers: Headers
    body: bytes
    cloud: str | None


class _TooLarge(Exception):
    pass


class RouterApp:
    """The ASGI callable. ``router`` holds the state; this class only moves bytes."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self._rng = random.Random()
        self._background: set[asyncio.Future[Any]] = set()
        self._admin = AdminApi(router)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path.startswith("/admin/") or path == "/metrics":
                await send_reply(send, await self._admin.handle(scope, receive))
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
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.router.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

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
            await send_reply(send, json_reply(413, {"error": f"request body is larger than {limit} bytes"},
                                              (b"connection", b"close")))
            return
        except ValueError:
            await send_reply(send, json_reply(400, {"error": "Content-Length is not a number"}))
            return

        raw_path = scope.get("raw_path") or scope["path"].encode()
        qs = scope.get("query_string")
        target = (raw_path + b"?" + qs if qs else raw_path).decode("latin-1")
        method = scope["method"]

        answer = await self._forward(method, target, headers, body)
        router.overall.observe(time.perf_counter() - started, len(answer.body))
        # an upstream may not speak for the router: its own x-mco-cloud is dropped, ours is added
        out = [(k, v) for k, v in answer.headers if k.lower() not in HOP_BY_HOP and k.lower() != CLOUD_HEADER_BYTES]
        if answer.cloud is not None:
            out.append((CLOUD_HEADER_BYTES, answer.cloud.encode()))
        if not any(k.lower() == b"content-length" for k, _ in out):
            out.append((b"content-length", str(len(answer.body)).encode()))
        await send_reply(send, (answer.status, out, answer.body))

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
                   body: bytes) -> Reply | UpstreamError:
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

    async def _forward(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Answer:
        router = self.router
        retries = router.cfg.retries
        router.budget.request()
        candidates = router.balancer.candidates()
        if not candidates:
            router.client_errors["no_target"] += 1
            return Answer(*json_reply(503, {"error": "the router has no targets configured"}), None)
        n = len(candidates)
        tried: list[dict[str, str]] = []
        last_5xx: Answer | None = None
        attempt = 0
        if retries.hedge and n > 1:
            outcome = await self._hedged(candidates, method, path, headers, body, tried)
            if outcome is not None and outcome.status < 500:
                return outcome
            if outcome is not None:
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
                last_5xx = Answer(*result, target.name)
                continue
            return Answer(*result, target.name)
        router.client_errors["all_failed"] += 1
        if last_5xx is not None:
            return last_5xx
        if router.balancer.all_down:
            return Answer(*json_reply(503, {"error": "no healthy cloud: every target is down", "tried": tried},
                                      (b"retry-after", b"1")), None)
        return Answer(*json_reply(502, {"error": "no target answered", "tried": tried}), None)

    async def _hedged(self, candidates: tuple[TargetState, ...], method: str, path: str,
                      headers: list[tuple[str, str]], body: bytes, tried: list[dict[str, str]]) -> Answer | None:
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
        last: Answer | None = None
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    result, target = task.result(), tasks[task]
                    if isinstance(result, UpstreamError):
                        tried.append({"target": target.name, "failure": result.kind})
                    elif result[0] >= 500:
                        tried.append({"target": target.name, "failure": f"HTTP {result[0]}"})
                        last = Answer(*result, target.name)
                    else:
                        return Answer(*result, target.name)
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

