"""The router's Rust data plane (``router.dataplane: rust``): the control plane's side of it.

The control plane decides and the data plane forwards. With ``rust``, this process keeps
every decision (active checks, outlier detection and ejections, policies and weights,
accounting, cost, the event log, the admin API and ``/metrics``) and a Rust process,
``mco-dataplane`` (``orchestrator/router/dataplane_rs/``, tokio + hyper), forwards::

    clients ──► mco-dataplane (router.host:router.port) ──► targets
                   │  /admin/*, /metrics, /healthz, /readyz*, /v1/feedback
                   ▼
                this process: the control plane on 127.0.0.1:<free port>

* **The table** (``dataplane_table``): settings (timeouts, limits, retry allow-list), the
  targets, and the order to try them in, which the policy computes here
  (``Policy.dataplane_plan``); the Rust side only draws the first target when the policy
  draws one (by weight, or power of two choices on its own latency EWMA).
* **The link**: every 100 ms (250 ms when idle) the Rust process POSTs
  ``/admin/dataplane/report`` on the control port with ``x-mco-dataplane-secret`` (a random
  secret this process gives it in ``$MCO_DATAPLANE_SECRET``): per-target latency histograms,
  counters and the order of successes and failures, what clients saw, its own saturation
  and retry budget. ``RustLink.handle`` folds them into the same ``TargetStats``, outlier
  detector and counters the Python data plane feeds, so ejection, status and metrics work
  unchanged; the answer carries the table whenever it changed.
* **Changes at once**: the Rust side also keeps a long poll open,
  ``GET /admin/dataplane/table?version=N``, answered as soon as the balancer's candidates
  change (health, targets, weights: ``Balancer.on_change``) or after 5 s, so a failover or
  failback reaches it in milliseconds, not at the next report.
* **The binary** is built by ``make setup`` (``scripts/setup/56-dataplane-rs.sh``) into
  ``$MCO_CACHE/mco-dataplane-<key>/``, the key a hash of ``Cargo.lock``, ``Cargo.toml`` and
  the sources; ``$MCO_DATAPLANE_BIN`` overrides. Missing: ``NotBuiltError`` says how to build it.

What the Rust side does not do (yet): request ids and kept predictions (``feedback.keep``:
``/v1/predict`` answers carry no ``x-mco-request-id``), ``https://`` targets, and
``--workers`` (one process; ``--threads`` in the binary instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import ConfigError, NotBuiltError, Unreachable
from orchestrator.router.asgi import Reply, json_reply
from orchestrator.router.retries import RetryBudget

if TYPE_CHECKING:
    from orchestrator.config import RouterConfig
    from orchestrator.router.state import Router

__all__ = ["BIN_ENV", "SECRET_HEADER", "RustDataPlane", "RustLink", "binary_key", "dataplane_table", "find_binary",
           "serve_rust"]

CRATE = Path(__file__).parent / "dataplane_rs"
BIN_ENV = "MCO_DATAPLANE_BIN"
SECRET_ENV = "MCO_DATAPLANE_SECRET"
SECRET_HEADER = b"x-mco-dataplane-secret"


# -- the binary ---------------------------------------------------------------------------
def binary_key(crate: Path = CRATE) -> str:
    """The cache key ``dataplane_rs/build.sh`` computes: Cargo.lock, Cargo.toml, then src/*.rs by name."""
    sources = sorted((crate / "src").glob("*.rs"), key=lambda p: p.name.encode())
    digest = hashlib.sha256()
    for path in [crate / "Cargo.lock", crate / "Cargo.toml", *sources]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def find_binary() -> Path:
    override = os.environ.get(BIN_ENV)
    if override:
        path = Path(override)
        if not os.access(path, os.X_OK):
            raise NotBuiltError(f"${BIN_ENV} names {path}, which is not an executable",
                                hint=f"unset {BIN_ENV}, or point it at a built mco-dataplane")
        return path
    cache = Path(os.environ.get("MCO_CACHE") or Path.home() / ".cache" / "mco")
    path = cache / f"mco-dataplane-{binary_key()}" / "mco-dataplane"
    if not os.access(path, os.X_OK):
        raise NotBuiltError(f"the router's Rust data plane is not built for these sources (looked for {path})",
                            hint="run `bash scripts/setup/56-dataplane-rs.sh` (part of `make setup`; needs cargo), "
                                 "or use router.dataplane: python")
    return path


def check_supported(cfg: RouterConfig) -> None:
    """What the Rust data plane cannot do, said before it starts."""
    https = [t.name for t in cfg.targets if t.url.startswith("https://")]
    if https:
        raise ConfigError(f"router.dataplane: rust forwards plain HTTP only; https targets: {', '.join(https)}",
                          hint="use router.dataplane: python for https targets")
    if cfg.cloud is not None:
        # the hop rule (router/headers.py): a request that came through another router is served by
        # this router's own cloud only; the Rust side neither reads nor sets x-mco-hop
        raise ConfigError(f"router.dataplane: rust does not keep the hop rule that a router in a cloud "
                          f"(router.cloud: {cfg.cloud}) needs, so routers calling routers could spill back and forth",
                          hint="use router.dataplane: python for a router in a cloud (the routers mco deploy runs "
                               "in the clusters always do), or leave router.cloud unset")
    if cfg.workers > 1:
        raise ConfigError("router.workers > 1 is for the python data plane",
                          hint="the rust data plane is one process; set router.workers: 1")


# -- the table ------------------------------------------------------------------------------
def dataplane_table(router: Router) -> dict[str, Any]:
    """What the Rust side needs to forward: settings, targets, the order to try them in."""
    cfg = router.cfg
    r, lim = cfg.retries, cfg.limits
    balancer = router.balancer
    healthy = balancer.healthy
    if healthy:
        pick, among, order = balancer.policy.dataplane_plan(healthy)
    else:  # panic: every target by priority
        pick, among, order = "first", (), balancer.by_priority
    return {
        "router": router.name,
        "settings": {
            "per_try_timeout_s": r.per_try_timeout_s, "connect_timeout_s": r.connect_timeout_s,
            "attempts": r.attempts, "budget_ratio": r.budget_ratio, "budget_min_per_s": r.budget_min_per_s,
            "backoff_base_s": r.backoff_base_s, "backoff_max_s": r.backoff_max_s, "hedge": r.hedge,
            "hedge_min_delay_s": r.hedge_min_delay_s, "deadline_s": r.deadline, "retry_allow": list(r.retry_allow),
            "max_header_bytes": lim.max_header_bytes, "max_headers": lim.max_headers,
            "header_timeout_s": lim.header_timeout_s, "body_timeout_s": lim.body_timeout_s,
            "idle_timeout_s": lim.idle_timeout_s, "max_concurrency": lim.max_concurrency,
            "max_response_bytes": lim.max_response_bytes, "max_body_bytes": cfg.max_body_bytes,
            "shed_lag_s": lim.shed_lag_s,
        },
        "targets": [{"name": t.name, "url": t.cfg.url, "weight": t.cfg.weight,
                     "recent_p95_s": round(t.recent_p95_s, 6) if t.recent_p95_s is not None else None}
                    for t in balancer.by_priority],
        "all_down": balancer.all_down,
        "order": [t.name for t in order],
        "pick": pick,
        "among": [t.name for t in among],
    }


class _ReportedBudget(RetryBudget):
    """The retry budget the Rust side applies, as it last reported it."""

    def __init__(self, budget: RetryBudget) -> None:
        super().__init__(ratio=budget.ratio, min_per_s=budget.min_per_s, window_s=budget.window_s)
        self.reported: dict[str, float] | None = None

    def snapshot(self) -> dict[str, float]:
        return self.reported if self.reported is not None else super().snapshot()


class RustLink:
    """The control plane's end of the link: reports in, the table out (``/admin/dataplane/report``)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.secret = secrets.token_urlsafe(32)
        self.version = 0
        self._table: dict[str, Any] | None = None
        self.saturation: dict[str, Any] | None = None
        self.reports = 0
        self.last_report = 0.0
        self.acked = 0  # the table version the data plane said it routes by, in its last report
        self.budget = _ReportedBudget(router.budget)
        router.budget = self.budget
        router.saturation = self._saturation
        router.rust_link = self
        self._wake = asyncio.Event()
        router.balancer.on_change = self._changed

    def _changed(self) -> None:
        loop = self.router.loop
        if loop is not None:  # (from the control plane's loop, or a thread: the same wake-up)
            loop.call_soon_threadsafe(self._wake.set)

    def _saturation(self) -> dict[str, Any]:
        return {**(self.saturation or {"inflight": 0, "max_concurrency": self.router.cfg.limits.max_concurrency,
                                       "loop_lag_ms": 0.0, "max_loop_lag_ms": 0.0}),
                "own_stall_timeouts": self.router.own_stall_timeouts, "dataplane": "rust"}

    def table(self) -> dict[str, Any]:
        table = dataplane_table(self.router)
        if table != self._table:
            self._table = table
            self.version += 1
        return table

    def handle(self, secret: bytes | None, body: bytes) -> Reply:
        if secret is None or not hmac.compare_digest(secret, self.secret.encode()):
            return json_reply(401, {"error": "dataplane reports are for the router's own data plane"})
        try:
            doc = json.loads(body)
            self.apply(doc)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return json_reply(400, {"error": f"bad report: {type(exc).__name__}: {exc}"})
        self.acked = doc.get("version", 0)
        table = self.table()
        fresh = self.acked != self.version
        return json_reply(200, {"version": self.version, "table": {**table, "version": self.version} if fresh else None})

    async def watch(self, secret: bytes | None, have: int, *, hold_s: float = 5.0) -> Reply:
        """The long poll: the table once it differs from version ``have``, or none after ``hold_s``."""
        if secret is None or not hmac.compare_digest(secret, self.secret.encode()):
            return json_reply(401, {"error": "the routing table is for the router's own data plane"})
        deadline = time.monotonic() + hold_s
        while True:
            self._wake.clear()
            table = self.table()
            if self.version != have:
                self.acked = max(self.acked, have)
                return json_reply(200, {"version": self.version, "table": {**table, "version": self.version}})
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return json_reply(200, {"version": self.version, "table": None})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    def wait_synced(self, version: int, timeout: float = 3.0) -> bool:
        """From another thread: wait until the data plane routes by table ``version`` or later."""
        deadline = time.monotonic() + timeout
        while self.acked < version:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def apply(self, doc: dict[str, Any]) -> None:
        """Fold one report into the router's state, as the Python data plane's accounting would have."""
        router = self.router
        self.reports += 1
        self.last_report = time.monotonic()
        for name, d in doc.get("targets", {}).items():
            target = router.balancer.targets.get(name)
            if target is None:
                continue  # a target removed by a reload since
            s = target.stats
            _add_answers(s, d)
            s.bytes_in += d["bytes_in"]
            s.responses_4xx += d["responses_4xx"]
            s.retries += d["retries"]
            s.hedges += d["hedges"]
            for kind, n in d["errors"].items():
                s.errors[kind] = s.errors.get(kind, 0) + n
            if d["ewma_s"]:
                s.ewma_s = d["ewma_s"]
            for kind, n in d["runs"]:  # in the order they happened: outlier detection counts runs
                if kind == "ok":
                    router.passive.success(name)
                else:
                    for _ in range(min(n, 100)):
                        router.passive.failure(name, kind)
        o, overall = router.overall, doc.get("overall", {})
        if overall.get("requests"):
            _add_answers(o, overall)
        for kind, n in doc.get("client_errors", {}).items():
            router.client_errors[kind] = router.client_errors.get(kind, 0) + n
        router.own_stall_timeouts += doc.get("own_stall_timeouts", 0)
        if doc.get("saturation") is not None:
            self.saturation = doc["saturation"]
        if doc.get("retry_budget") is not None:
            self.budget.reported = doc["retry_budget"]


# -- the process ------------------------------------------------------------------------------
def _socket_address(host: str, port: int) -> str:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = ipaddress.ip_address(socket.gethostbyname(host))
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


class RustDataPlane:
    """``mco-dataplane`` as a child process of the control plane."""

    def __init__(self, link: RustLink, *, host: str, port: int, control_port: int, threads: int = 1) -> None:
        self.link = link
        self.host, self.port = host, port
        self.argv = [str(find_binary()), "--listen", _socket_address(host, port),
                     "--control", f"127.0.0.1:{control_port}", "--threads", str(threads)]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def spawn(self) -> None:
        env = {**os.environ, SECRET_ENV: self.link.secret}
        self.proc = subprocess.Popen(self.argv, env=env, stdin=subprocess.DEVNULL)

    def listening(self) -> bool:
        from orchestrator.net import port_open

        return port_open(self.host if self.host not in ("0.0.0.0", "::") else "127.0.0.1", self.port)

    def failed(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            return f"mco-dataplane exited with code {self.proc.returncode} (its log is the router's)"
        return None

    def _started(self, deadline: float) -> bool:
        """Listening yet? ``Unreachable`` (after stopping it) once it exited or the deadline passed."""
        if self.listening():
            return True
        failure = self.failed()
        if failure or time.monotonic() > deadline:
            self.stop()
            raise Unreachable(f"the Rust data plane did not start on {self.host}:{self.port}: "
                              f"{failure or 'not listening in time'}")
        return False

    def start(self, timeout: float = 15.0) -> None:
        """Spawn and wait until it listens (from a thread that is not the control plane's loop)."""
        self.spawn()
        deadline = time.monotonic() + timeout
        while not self._started(deadline):
            time.sleep(0.05)

    async def start_async(self, timeout: float = 15.0) -> None:
        """As ``start``, from the control plane's own loop (which must keep answering reports)."""
        self.spawn()
        deadline = time.monotonic() + timeout
        while not self._started(deadline):
            await asyncio.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def serve_rust(cfg: RouterConfig, *, token: str | None, config_path: Path | None = None) -> None:
    """``router.dataplane: rust``: the control plane here, on a loopback port, and mco-dataplane
    on ``router.host:router.port``. Serves until SIGINT/SIGTERM or until the data plane exits."""
    from orchestrator.net import free_port
    from orchestrator.router.dataplane.server import DataPlane, _new_loop
    from orchestrator.router.state import Router

    check_supported(cfg)
    find_binary()  # a missing binary is said before anything starts

    async def main() -> None:
        router = Router(cfg, token=token, config_path=config_path)
        router.handle_sighup = config_path is not None
        control_port = free_port("127.0.0.1")
        plane = DataPlane(router, listen=("127.0.0.1", control_port))
        await plane.start()
        link = RustLink(router)
        rust = RustDataPlane(link, host=cfg.host, port=cfg.port, control_port=control_port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await rust.start_async()

            async def watch() -> None:
                while rust.failed() is None:
                    await asyncio.sleep(0.5)
                stop.set()

            watcher = loop.create_task(watch())
            await stop.wait()
            watcher.cancel()
        finally:
            with contextlib.suppress(Exception):
                await loop.run_in_executor(None, rust.stop)
            await plane.stop()

    with asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(main())


def _add_answers(stats: Any, d: dict[str, Any]) -> None:
    """Fold one report's latency histogram, request count, latency sum and bytes out into ``stats``."""
    last = len(stats.counts) - 1
    for index, n in d["counts"].items():
        stats.counts[min(int(index), last)] += n
    stats.requests += d["requests"]
    stats.latency_sum_s += d["latency_sum_s"]
    stats.bytes_out += d["bytes_out"]
