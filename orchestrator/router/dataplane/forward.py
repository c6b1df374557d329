"""Try, retry and hedge one request across the targets, with the accounting of every try.

The common case costs one future: the first candidate answers within its per-try
timeout. Everything else is paid for only when it happens:

* **hedging** (``retries.hedge``, repeatable requests, two or more candidates): one timer
  at the target's recent p95 (a quarter of the per-try timeout while no p95 is known);
  only when it fires does a second copy go to the next candidate, within the retry
  budget. The first answer wins; the loser runs on to its own answer or timeout, so a
  hung target is still seen by outlier detection;
* **retries**, on the next candidate, within ``retries.attempts``, the retry budget and a
  jittered backoff:

  - refused connect: always (the request never left);
  - reset (even mid-response, the answer being buffered) or timeout: repeatable requests;
  - upstream 5xx: repeatable requests, once at most; a request that got a 5xx from two
    clouds is answered with the last one, never tried on a third (a query of death);
  - an answer over ``limits.max_response_bytes``: never; 502 naming the cap;
  - 4xx: never; passed through.

*Repeatable* means GET, HEAD, or ``METHOD /path`` in ``retries.retry_allow`` (by
default ``POST /v1/predict`` and the Open Inference Protocol's ``POST /v2/models/*/infer``,
``*`` being one path segment): feedback and admin calls are never sent twice.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from orchestrator.router.asgi import Headers, json_reply
from orchestrator.router.dataplane.overload import LoopMonitor
from orchestrator.router.dataplane.upstream import Outcome, Pool, UpstreamError
from orchestrator.router.retries import backoff

if TYPE_CHECKING:
    from orchestrator.router.balancer import TargetState
    from orchestrator.router.state import Router

__all__ = ["Answer", "Forwarder"]

_IDEMPOTENT = frozenset({b"GET", b"HEAD"})


class Answer(NamedTuple):
    """What the client gets, and the target that answered (None: the router did)."""

    status: int
    headers: Headers
    body: bytes
    cloud: str | None


class Forwarder:
    def __init__(self, router: Router, monitor: LoopMonitor) -> None:
        self.router = router
        self.monitor = monitor
        self._rng = random.Random()
        self._pools: dict[str, Pool] = {}
        self.loop = asyncio.get_running_loop()
        retries = router.cfg.retries
        self._try_bound = retries.connect_timeout_s + retries.per_try_timeout_s  # the longest one try can take
        entries = [tuple(e.encode().split(b" ", 1)) for e in router.cfg.retries.retry_allow]
        self.allow = frozenset(e for e in entries if b"*" not in e[1])
        # "*" stands for one path segment; patterns are tried only when the exact set misses
        self.allow_patterns = [(m, re.compile(re.escape(p).replace(rb"\*", rb"[^/]+") + rb"\Z"))
                               for m, p in entries if b"*" in p]

    def repeatable(self, method: bytes, path: bytes) -> bool:
        if method in _IDEMPOTENT or (method, path) in self.allow:
            return True
        return any(m == method and pattern.match(path) for m, pattern in self.allow_patterns)

    def pool(self, target: TargetState) -> Pool:
        url = target.cfg.url
        pool = self._pools.get(url)
        if pool is None:
            cfg = self.router.cfg
            pool = self._pools[url] = Pool(
                url, per_try_timeout_s=cfg.retries.per_try_timeout_s, connect_timeout_s=cfg.retries.connect_timeout_s,
                max_response_bytes=cfg.limits.max_response_bytes, stalled=self.monitor.stalled_since)
        return pool

    def prune(self) -> None:
        """Close the pools of targets that a reload removed."""
        live = {t.cfg.url for t in self.router.balancer.by_priority}
        for url in [u for u in self._pools if u not in live]:
            self._pools.pop(url).close()

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    # -- one try ---------------------------------------------------------------------
    def _try(self, target: TargetState, method: bytes, path: bytes, headers: bytes, body: bytes,
             repeatable: bool, then: Callable[[TargetState, Outcome], None] | None = None,
             ) -> asyncio.Future[Outcome] | None:
        """Send one try. Its outcome (the answer or the failure) is accounted, then handed to
        ``then`` when given (synchronously, from the protocol's callback), else to the future
        returned."""
        router = self.router
        pool = self.pool(target)
        done: asyncio.Future[Outcome] | None = pool.loop.create_future() if then is None else None
        t0 = time.perf_counter()

        def account(outcome: Outcome) -> None:
            elapsed = time.perf_counter() - t0
            if isinstance(outcome, UpstreamError):
                if outcome.kind != "too_large":
                    target.stats.error(outcome.kind, elapsed)
                    if outcome.own_stall:
                        router.own_stall_timeouts += 1
                    else:
                        router.passive.failure(target.name, outcome.kind)
            elif outcome[0] >= 500:
                target.stats.error("http_5xx", elapsed)
                router.passive.failure(target.name, "http_5xx")
            else:
                target.stats.observe(elapsed, len(outcome[2]))
                if outcome[0] >= 400:
                    target.stats.responses_4xx += 1
                router.passive.success(target.name)
            if then is not None:
                then(target, outcome)
            elif done is not None and not done.done():
                done.set_result(outcome)

        target.stats.bytes_in += len(body)
        pool.send(pool.request_bytes(method, path, headers, body), account, head_only=method == b"HEAD",
                  replayable=repeatable)
        return done

    # -- one request -----------------------------------------------------------------
    async def forward(self, method: bytes, path: bytes, query: bytes, headers: bytes, body: bytes, *,
                      hopped: bool = False) -> Answer:
        """``hopped``: the request came through another mco router (``x-mco-hop``), which chose
        this cloud; it is served by this router's own cloud only, never spilled again."""
        router = self.router
        retries = router.cfg.retries
        router.budget.request()
        candidates = router.balancer.candidates()
        if hopped and router.cfg.cloud is not None:
            candidates = tuple(t for t in candidates if t.local and t.healthy)
            if not candidates:
                router.client_errors["hop_no_local"] += 1
                return Answer(*json_reply(503, {"error": f"this request came through another mco router, so it is "
                                                         f"served by this router's own cloud ({router.cfg.cloud}) "
                                                         "only, and no target there is healthy"},
                                          (b"retry-after", b"1")), None)
        if not candidates:
            router.client_errors["no_target"] += 1
            return Answer(*json_reply(503, {"error": "the router has no targets configured"}), None)
        repeatable = self.repeatable(method, path)
        target_path = path + b"?" + query if query else path
        n = len(candidates)
        tried: list[dict[str, str]] = []
        last_5xx: Answer | None = None
        fivexx = 0
        attempt = 0
        deadline = self.loop.time() + retries.deadline
        late = False
        while attempt < retries.attempts:
            if attempt:
                if not router.budget.try_acquire():
                    break
                pause = backoff(attempt, base_s=retries.backoff_base_s, max_s=retries.backoff_max_s, rng=self._rng)
                if self.loop.time() + pause >= deadline:
                    late = True  # no time left for another try: say so now rather than hang
                    break
                if pause:
                    await asyncio.sleep(pause)
            remaining = deadline - self.loop.time()
            # a try ends by its own timeouts; the deadline's timer is armed only when it could end later
            guard = remaining if remaining < self._try_bound else None
            try:
                # no hedge to a drained target (weight 0): a waves deploy keeps it out of the traffic
                if attempt == 0 and retries.hedge and repeatable and n > 1 and candidates[1].cfg.weight > 0:
                    hedged = self._hedged(candidates, method, target_path, headers, body)
                    outcomes = await (asyncio.wait_for(hedged, remaining) if remaining < 2 * self._try_bound
                                      else hedged)
                else:
                    target = candidates[attempt % n]
                    if attempt:
                        target.stats.retries += 1
                    sent = self._try(target, method, target_path, headers, body, repeatable)
                    assert sent is not None
                    # the try runs on past the deadline to its own outcome, so it is still accounted
                    outcomes = [(target, await (sent if guard is None else asyncio.wait_for(sent, guard)))]
            except TimeoutError:
                late = True
                tried.append({"target": candidates[attempt % n].name, "failure": "deadline"})
                break
            attempt += len(outcomes)
            stop = False
            for target, outcome in outcomes:
                if isinstance(outcome, UpstreamError):
                    tried.append({"target": target.name, "failure": outcome.kind})
                    if outcome.kind == "too_large":
                        router.client_errors["response_too_large"] += 1
                        return Answer(*json_reply(502, {"error": f"the answer of {target.name} is larger than "
                                                        f"limits.max_response_bytes "
                                                        f"({router.cfg.limits.max_response_bytes} bytes)"}),
                                      None)
                    if outcome.kind != "connect" and not repeatable:
                        stop = True
                    continue
                status = outcome[0]
                if status >= 500:
                    tried.append({"target": target.name, "failure": f"HTTP {status}"})
                    last_5xx = Answer(*outcome, target.name)
                    fivexx += 1
                    if fivexx >= 2 or not repeatable:
                        stop = True  # the same failure on two clouds is the request's, not theirs
                    continue
                return Answer(*outcome, target.name)
            if stop:
                break
        router.client_errors["all_failed"] += 1
        if last_5xx is not None:
            return last_5xx
        if router.balancer.all_down:
            return Answer(*json_reply(503, {"error": "no healthy cloud: every target is down", "tried": tried},
                                      (b"retry-after", b"1")), None)
        if late:
            router.client_errors["deadline"] = router.client_errors.get("deadline", 0) + 1
            return Answer(*json_reply(503, {"error": f"no answer within the router's deadline "
                                                     f"(retries.deadline_s = {retries.deadline:g} s)",
                                            "tried": tried}, (b"retry-after", b"1")), None)
        return Answer(*json_reply(502, {"error": "no target answered", "tried": tried}), None)

    async def _hedged(self, candidates: tuple[TargetState, ...], method: bytes, path: bytes, headers: bytes,
                      body: bytes) -> list[tuple[TargetState, Outcome]]:
        """The first try, and a second on the next cloud if the first is slower than its recent p95.

        Returns the outcomes in the order they came, ending at the first answer below 500
        (or when every try made has failed)."""
        router = self.router
        retries = router.cfg.retries
        first, second = candidates[0], candidates[1]
        p95 = first.recent_p95_s
        delay = max(retries.hedge_min_delay_s, p95 if p95 is not None else retries.per_try_timeout_s / 4)
        loop = self.loop
        waiter: asyncio.Future[None] = loop.create_future()
        outcomes: list[tuple[TargetState, Outcome]] = []
        started = [first]

        def arrived(target: TargetState, outcome: Outcome) -> None:
            if waiter.done():
                return  # a loser: its accounting is done, its answer is dropped
            outcomes.append((target, outcome))
            good = not isinstance(outcome, UpstreamError) and outcome[0] < 500
            if good or len(outcomes) == len(started):
                waiter.set_result(None)

        def fire() -> None:
            if waiter.done() or not router.budget.try_acquire():
                return
            second.stats.hedges += 1
            started.append(second)
            self._try(second, method, path, headers, body, True, arrived)

        self._try(first, method, path, headers, body, True, arrived)
        timer = loop.call_later(delay, fire)
        try:
            await waiter
        finally:
            timer.cancel()
        return outcomes
