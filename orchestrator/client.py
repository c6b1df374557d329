"""``orchestrator.client``: call the model through a list of entry points, for callers who
cannot wait out a DNS TTL.

    from orchestrator.client import Client
    with Client(["https://aws.example.com", "https://gcp.example.com"], deadline_s=2.0) as c:
        c.predict([[0, 0, 5, ...]])          # the JSON answer
        c.last_entry, c.last_response.headers["x-mco-cloud"]

The rules are the router's (``retries`` in mco.yaml, ``router/dataplane/forward.py``):

* one **deadline** for the whole call (``deadline_s``): no try starts after it, and a try
  in flight is abandoned at it; then ``Unreachable`` lists every try;
* each try has its own timeout (``per_try_timeout_s``, connect included);
* a refused connect moves to the next entry point always (the request never left); a
  timeout, a reset or an answer >= 500 only for **repeatable** requests: GET, HEAD, and
  ``retry_allow`` (``POST /v1/predict`` by default), so feedback is never sent twice;
  a 4xx is the answer, never retried;
* a small jittered backoff between tries (``backoff_base_s`` .. ``backoff_max_s``);
* **hedging** when asked (``hedge_after_s``): if the first entry point has not answered
  after that long, the same repeatable request goes to the next one as well; the first
  good answer wins and the other is cancelled.

The entry point that answered last is tried first next time, and one that failed is
skipped for ``cooldown_s`` while another is available, so a dead region costs one try,
not one per call. One async core (``AsyncClient``); ``Client`` is a thin sync wrapper.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

import httpx

from orchestrator.errors import ConfigError, Unreachable

__all__ = ["AsyncClient", "Client"]

_IDEMPOTENT = frozenset({"GET", "HEAD"})


class _Failed(Exception):
    def __init__(self, entry: str, failure: str, response: httpx.Response | None = None) -> None:
        super().__init__(failure)
        self.entry, self.failure, self.response = entry, failure, response


class AsyncClient:
    def __init__(self, entry_points: Sequence[str], *, deadline_s: float = 2.0, per_try_timeout_s: float = 0.5,
                 hedge_after_s: float | None = None, retry_allow: Sequence[str] = ("POST /v1/predict",),
                 backoff_base_s: float = 0.002, backoff_max_s: float = 0.025, cooldown_s: float = 5.0,
                 headers: dict[str, str] | None = None, verify: Any = True,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        entries = [e.rstrip("/") for e in entry_points]
        if not entries:
            raise ConfigError("the client needs at least one entry point", hint="pass the routers' or the global "
                                                                                "entry's URLs")
        for e in entries:
            if not e.startswith(("http://", "https://")):
                raise ConfigError(f"entry point '{e}' is not an http(s) URL")
        if deadline_s <= 0 or per_try_timeout_s <= 0:
            raise ConfigError("deadline_s and per_try_timeout_s must be positive")
        self.entries = entries
        self.deadline_s, self.per_try_timeout_s, self.hedge_after_s = deadline_s, per_try_timeout_s, hedge_after_s
        self.allow = frozenset(tuple(a.split(" ", 1)) for a in retry_allow)
        self.backoff_base_s, self.backoff_max_s, self.cooldown_s = backoff_base_s, backoff_max_s, cooldown_s
        self._http = httpx.AsyncClient(headers=headers, verify=verify, transport=transport,
                                       timeout=httpx.Timeout(per_try_timeout_s))
        self._preferred = 0
        self._cooling: dict[int, float] = {}  # entry index -> monotonic time it may be tried again
        self._rng = random.Random()
        self.last_entry: str | None = None
        self.last_tries: list[dict[str, str]] = []

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def repeatable(self, method: str, path: str) -> bool:
        return method in _IDEMPOTENT or (method, path) in self.allow

    def _order(self) -> list[int]:
        """The preferred entry first, then the rest in the given order; cooling ones last."""
        n = len(self.entries)
        order = [(self._preferred + i) % n for i in range(n)]
        now = time.monotonic()
        return [i for i in order if self._cooling.get(i, 0) <= now] + [i for i in order if self._cooling.get(i, 0) > now]

    async def _one(self, index: int, method: str, path: str, repeatable: bool, kwargs: dict[str, Any],
                   timeout: float) -> httpx.Response:
        entry = self.entries[index]
        try:
            resp = await self._http.request(method, entry + path, timeout=httpx.Timeout(timeout), **kwargs)
        except httpx.ConnectError as exc:
            raise _Failed(entry, f"connect: {type(exc).__name__}") from None
        except httpx.TimeoutException as exc:
            raise _Failed(entry, f"timeout: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise _Failed(entry, f"reset: {type(exc).__name__}") from None
        if resp.status_code >= 500:
            raise _Failed(entry, f"HTTP {resp.status_code}", resp)
        return resp

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send ``method path`` to the entry points in turn until one answers below 500, within the deadline."""
        method = method.upper()
        repeatable = self.repeatable(method, path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline_s
        order = self._order()
        tries: list[dict[str, str]] = []
        last_5xx: httpx.Response | None = None
        self.last_tries = tries
        k = 0
        while k < len(order):
            remaining = deadline - loop.time()
            if remaining <= 0:
                tries.append({"entry": self.entries[order[k]], "failure": "deadline"})
                break
            timeout = min(self.per_try_timeout_s, remaining)
            indexes = [order[k]]
            if k == 0 and repeatable and self.hedge_after_s is not None and len(order) > 1:
                indexes.append(order[1])
            try:
                index, resp = await self._race(indexes, method, path, repeatable, kwargs, timeout)
            except _Raced as raced:
                for f in raced.failures:
                    tries.append({"entry": f.entry, "failure": f.failure})
                    self._cooling[self.entries.index(f.entry)] = time.monotonic() + self.cooldown_s
                    if f.response is not None:
                        last_5xx = f.response
                stop = not repeatable and not all(f.failure.startswith("connect") for f in raced.failures)
                k += len(indexes)
                if stop:
                    break
                pause = min(self.backoff_max_s, self.backoff_base_s * 2 ** len(tries)) * self._rng.random()
                if loop.time() + pause < deadline:
                    await asyncio.sleep(pause)
                continue
            self._preferred = index
            self._cooling.pop(index, None)
            self.last_entry = self.entries[index]
            return resp
        if last_5xx is not None and not repeatable:
            return last_5xx  # the one try of a non-repeatable request: its answer, as the router does
        raise Unreachable(f"no entry point answered {method} {path} within {self.deadline_s} s: "
                          + "; ".join(f"{t['entry']}: {t['failure']}" for t in tries),
                          hint="check the routers' /readyz; the deadline is deadline_s")

    async def _race(self, indexes: list[int], method: str, path: str, repeatable: bool, kwargs: dict[str, Any],
                    timeout: float) -> tuple[int, httpx.Response]:
        """The first try, and (hedging) a second after ``hedge_after_s``: the first good answer wins."""
        first = asyncio.ensure_future(self._one(indexes[0], method, path, repeatable, kwargs, timeout))
        if len(indexes) == 1:
            try:
                return indexes[0], await first
            except _Failed as f:
                raise _Raced([f]) from None
        assert self.hedge_after_s is not None
        tasks = {first: indexes[0]}
        done, _ = await asyncio.wait({first}, timeout=self.hedge_after_s)
        if not done or first.exception() is not None:
            second = asyncio.ensure_future(self._one(indexes[1], method, path, repeatable, kwargs,
                                                     max(0.001, timeout - self.hedge_after_s)))
            tasks[second] = indexes[1]
        failures: list[_Failed] = []
        pending = set(tasks)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    exc = task.exception()
                    if exc is None:
                        return tasks[task], task.result()
                    if not isinstance(exc, _Failed):
                        raise exc
                    failures.append(exc)
        finally:
            for task in pending:
                task.cancel()
        raise _Raced(failures)

    async def predict(self, instances: list[Any]) -> Any:
        resp = await self.request("POST", "/v1/predict", json={"instances": instances})
        resp.raise_for_status()
        return resp.json()


class _Raced(Exception):
    def __init__(self, failures: list[_Failed]) -> None:
        super().__init__("every try failed")
        self.failures = failures


class Client:
    """The sync face of ``AsyncClient``: the same arguments, its own event loop."""

    def __init__(self, entry_points: Sequence[str], **options: Any) -> None:
        self._runner = asyncio.Runner()
        self._async = self._runner.run(self._make(entry_points, options))

    @staticmethod
    async def _make(entry_points: Sequence[str], options: dict[str, Any]) -> AsyncClient:
        return AsyncClient(entry_points, **options)

    @property
    def last_entry(self) -> str | None:
        return self._async.last_entry

    @property
    def last_tries(self) -> list[dict[str, str]]:
        return self._async.last_tries

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._runner.run(self._async.request(method, path, **kwargs))

    def predict(self, instances: list[Any]) -> Any:
        return self._runner.run(self._async.predict(instances))

    def close(self) -> None:
        self._runner.run(self._async.aclose())
        self._runner.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
