"""The open-loop load generator for drills, tests and benchmarks, recorded request by request.

Open loop: requests start on a fixed schedule whatever the answers do, the way real
clients keep arriving during an outage (a closed loop would slow down and hide the
damage, exactly the stalls a failover drill is looking for). Bounded in rate, duration and
concurrency, loopback or configured URLs only.

    TrafficGenerator   start() ... stop(): its own event loop in a background thread, so a
                       drill acts (kill, sleep, call the router) in blocking code meanwhile
    run_load           a fixed rate for a fixed time in the caller's event loop, with callables
                       run at set offsets (e.g. ``kill -9`` the primary at 1.5 s); a LoadResult

aiohttp is used because it keeps a steady schedule at hundreds of requests per second
where httpx's async client was measured to stall (see benchmarks/drill_traffic_bench.py).
Each record holds what a client saw: when it sent, the status (0 when no HTTP answer came),
the latency, the cloud that answered (the router's ``x-mco-cloud`` header) and the error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import ConfigError, MissingExtraError
from orchestrator.router.headers import CLOUD_HEADER

__all__ = ["LoadResult", "RequestRecord", "TrafficConfig", "TrafficGenerator", "predict_body", "run_load"]

@dataclass(frozen=True)
class RequestRecord:
    sent: float  # unix seconds, comparable with the router's event timestamps
    latency: float  # seconds until the whole body arrived, or until the failure
    status: int  # HTTP status; 0 when the request got no HTTP answer at all
    cloud: str | None
    error: str | None = None
    digest: str | None = None  # the model digest in the answer: which release served it
    detail: str | None = None  # for an HTTP error: who answered (Server header) and the start of the body

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def done(self) -> float:
        return self.sent + self.latency

    def as_row(self) -> list[Any]:
        return [round(self.sent, 6), round(self.latency, 6), self.status, self.cloud, self.error,
                (self.digest or "")[:12], self.detail or ""]


@dataclass(frozen=True)
class TrafficConfig:
    url: str  # full URL of the predict endpoint, e.g. http://127.0.0.1:8088/v1/predict
    rate: float = 200.0  # requests per second
    timeout: float = 5.0  # a client gives up after this long; counted as an error
    max_in_flight: int = 512  # beyond this a scheduled request is counted as an error, not queued
    body: bytes = field(default=b'{"instances": [[0.0]]}', repr=False)
    max_duration: float = 600.0
    count: int | None = None  # stop by itself after sending this many

    def __post_init__(self) -> None:
        if not 0 < self.rate <= 5000:
            raise ConfigError(f"traffic rate {self.rate} is out of range", hint="use 1 to 5000 requests per second")
        if self.timeout <= 0:
            raise ConfigError("the client timeout must be positive", hint="e.g. 5 seconds")


def predict_body(n_features: int = 64, rows: list[list[float]] | None = None) -> bytes:
    """A valid predict request for a model with ``n_features`` inputs."""
    instances = rows or [[float((i * 7) % 17) for i in range(n_features)]]
    return json.dumps({"instances": instances}).encode()


_STOP_CHECK_S = 0.05  # how soon a sleeping generator notices stop()


class TrafficGenerator:
    """Send ``config.rate`` requests per second from ``start()`` until ``stop()``.

    Runs its own event loop in a background thread, so the drill can act (kill, sleep,
    call the router) in ordinary blocking code meanwhile.
    """

    def __init__(self, config: TrafficConfig) -> None:
        self.config = config
        self.records: list[RequestRecord] = []
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: Any = None
        self._ready: Any = None
        self._failure: BaseException | None = None

    # ---- blocking facade ------------------------------------------------------------------

    def start(self) -> None:
        import threading

        try:
            import aiohttp  # noqa: F401
        except ImportError as exc:
            raise MissingExtraError("aiohttp", "drill", purpose="drill traffic") from exc
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, name="drill-traffic", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> list[RequestRecord]:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(self.config.timeout + 10)
        if self._failure is not None:
            raise self._failure
        return self.records

    def __enter__(self) -> TrafficGenerator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _thread_main(self) -> None:
        try:
            try:
                import uvloop

                runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
            except ImportError:
                runner = asyncio.Runner()
            with runner:
                runner.run(self.run())
        except BaseException as exc:
            self._failure = exc
            if self._ready is not None:
                self._ready.set()

    # ---- the loop -------------------------------------------------------------------------

    async def run(self) -> list[RequestRecord]:
        import aiohttp

        cfg = self.config
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        connector = aiohttp.TCPConnector(limit=cfg.max_in_flight, force_close=False, enable_cleanup_closed=True)
        timeout = aiohttp.ClientTimeout(total=cfg.timeout)
        headers = {"content-type": "application/json"}
        in_flight: set[asyncio.Task[None]] = set()
        interval = 1.0 / cfg.rate
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
            self.started_at = time.time()
            t0 = time.perf_counter()
            wall0 = self.started_at
            if self._ready is not None:
                self._ready.set()
            n = 0
            while not self._stop.is_set() and (cfg.count is None or n < cfg.count):
                due = t0 + n * interval
                delay = due - time.perf_counter()
                if delay > 0:
                    # a plain sleep (a wait on the stop event per request costs a task each)
                    await asyncio.sleep(min(delay, _STOP_CHECK_S))
                    continue
                if time.perf_counter() - t0 > cfg.max_duration:
                    break
                sent_wall = wall0 + (time.perf_counter() - t0)
                if len(in_flight) >= cfg.max_in_flight:
                    self.records.append(RequestRecord(sent_wall, 0.0, 0, None, "client overloaded"))
                else:
                    task = asyncio.create_task(self._one(session, sent_wall))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                n += 1
            self.stopped_at = time.time()
            if in_flight:
                await asyncio.wait(in_flight, timeout=cfg.timeout + 1)
        return self.records

    async def _one(self, session: Any, sent_wall: float) -> None:
        import aiohttp

        started = time.perf_counter()
        status, cloud, error, digest, detail = 0, None, None, None, None
        try:
            async with session.post(self.config.url, data=self.config.body) as resp:
                body = await resp.read()
                status = resp.status
                digest = _model_digest(body)
                cloud = resp.headers.get(CLOUD_HEADER)
                if status >= 400:
                    error = f"HTTP {status}"
                    detail = _error_detail(resp.headers.get("server"), body)
        except TimeoutError:
            error = "timeout"
        except aiohttp.ClientConnectorError:
            error = "connect refused"
        except aiohttp.ServerDisconnectedError:
            error = "disconnected"
        except aiohttp.ClientError as exc:
            error = type(exc).__name__
        self.records.append(RequestRecord(sent_wall, time.perf_counter() - started, status, cloud, error, digest,
                                          detail))


def _error_detail(server: str | None, body: bytes) -> str:
    """Enough of an error answer to tell which server gave it, for the report's samples."""
    text = body[:200].decode("utf-8", "replace").strip()
    return f"server={server or '?'} body={text!r}"


_DIGEST_KEY = b'"model_digest":'


def _model_digest(body: bytes) -> str | None:
    """The ``model_digest`` of a predict answer, found without parsing the whole JSON."""
    at = body.rfind(_DIGEST_KEY)
    if at < 0:
        return None
    start = body.find(b'"', at + len(_DIGEST_KEY))
    end = body.find(b'"', start + 1)
    if start < 0 or end < 0 or end - start > 80:
        return None
    return body[start + 1:end].decode("ascii", "replace")


# ---------------------------------------------------------------- a fixed run, for tests and benchmarks


@dataclass
class LoadResult:
    """What ``run_load`` saw. Its ``samples`` are the records with ``sent`` counted in
    seconds from the start of the run (``started_at``, unix time)."""

    rate: float
    duration: float
    samples: list[RequestRecord] = field(default_factory=list)
    started_at: float = 0.0

    @property
    def errors(self) -> list[RequestRecord]:
        return [s for s in self.samples if s.status != 200]

    def slower_than(self, seconds: float) -> int:
        return sum(1 for s in self.samples if s.latency > seconds)

    def percentile_ms(self, q: float, *, ok_only: bool = True) -> float | None:
        values = sorted(s.latency for s in self.samples if (s.status == 200 or not ok_only))
        if not values:
            return None
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    def by_cloud(self) -> dict[str | None, int]:
        out: dict[str | None, int] = {}
        for s in self.samples:
            out[s.cloud] = out.get(s.cloud, 0) + 1
        return out

    def moved_after(self, t0: float, away_from: str, *, window: int = 20) -> float | None:
        """Seconds after ``t0`` from which ``window`` answers in a row came from elsewhere."""
        after = sorted((s for s in self.samples if s.sent >= t0), key=lambda s: s.sent)
        run = 0
        for i, s in enumerate(after):
            if s.status == 200 and s.cloud is not None and s.cloud != away_from:
                run += 1
                if run >= window:
                    return max(0.0, after[i - window + 1].done - t0)
            else:
                run = 0
        return None

    def summary(self) -> dict[str, Any]:
        return {"rate": self.rate, "duration_s": self.duration, "requests": len(self.samples),
                "errors": len(self.errors), "slower_than_1s": self.slower_than(1.0),
                "p50_ms": self.percentile_ms(0.5), "p99_ms": self.percentile_ms(0.99),
                "max_ms": max((s.latency for s in self.samples), default=0) * 1000, "by_cloud": self.by_cloud()}


async def run_load(url: str, *, rate: float, duration: float, body: bytes | None = None,
                   timeout: float = 10.0, events: dict[float, Callable[[], Any]] | None = None,
                   max_connections: int = 512) -> LoadResult:
    """POST ``body`` (default: ``predict_body()``) to ``url`` ``rate`` times a second for
    ``duration`` seconds, in the running event loop.

    ``events`` maps a time offset to a callable run then (e.g. ``kill -9`` the primary),
    so a fault lands at a known moment of the run; offsets past the end run at the end.
    """
    count = int(rate * duration)
    generator = TrafficGenerator(TrafficConfig(
        url=url, rate=rate, timeout=timeout, max_in_flight=max_connections, count=count,
        body=body if body is not None else predict_body(), max_duration=duration + timeout))
    sending = asyncio.ensure_future(generator.run())
    while generator.started_at is None and not sending.done():
        await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for offset, fn in sorted((events or {}).items()):
        delay = start + min(offset, count / rate) - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        fn()
    records = await sending
    started = generator.started_at or time.time()
    return LoadResult(rate=rate, duration=duration, started_at=started,
                      samples=[dataclasses.replace(r, sent=r.sent - started) for r in records])
