"""What the data plane, the admin API and ``/metrics`` share: the ``Router`` state.

It holds the balancer and its targets, the health checkers that report to it, the
retry budget, the overall counters, the event log and the
sampler, starts and stops the work that runs beside the hot path, and replaces the
targets on a hot reload. Reports are built from it in ``report.py``.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.config import RouterConfig, RouterTargetConfig
from orchestrator.errors import ConfigError
from orchestrator.router.accounting import CostModel, TargetStats
from orchestrator.router.asgi import Reply, json_reply
from orchestrator.router.balancer import Balancer, TargetState
from orchestrator.router.events import EventLog
from orchestrator.router.health.active import ActiveChecker
from orchestrator.router.health.passive import OutlierDetector
from orchestrator.router.retries import RetryBudget
from orchestrator.router.sampler import Sampler
from orchestrator.router.workers import WorkerInfo

if TYPE_CHECKING:
    from orchestrator.router.rust import RustLink

__all__ = ["Router"]


class Router:
    """Everything the data plane and the admin API share."""

    def __init__(self, cfg: RouterConfig, *, token: str | None = None, config_path: Path | None = None,
) -> None:
        self.cfg = cfg
        self.token = token.encode() if token else None
        self.config_path = config_path
        self.started = time.time()
        self.events = EventLog(path=cfg.events_file)
        self.balancer = Balancer([self._state(t, i) for i, t in enumerate(cfg.targets)], cfg.policy, self.events,
                                 slo_p95_s=cfg.slo_p95_ms / 1000, spill=cfg.spill)
        self._check_unique(cfg.targets)
        self.active = ActiveChecker(cfg.health, self.balancer.sink("active"), self.events)
        self.passive = OutlierDetector(cfg.outlier, self.balancer.sink("passive"), self.events)
        self.passive.update([t.name for t in cfg.targets])
        self.passive.confirm_5xx = self.active.failing  # 5xx alone never ejects a target whose checks pass
        self.budget = RetryBudget(ratio=cfg.retries.budget_ratio, min_per_s=cfg.retries.budget_min_per_s)
        self.overall = TargetStats()  # what clients saw, retries included
        self.client_errors = {"body_too_large": 0, "all_failed": 0, "no_target": 0}
        # what the data plane refused or could not do, and its own saturation (overload.py)
        self.client_errors.update(dict.fromkeys(
            ("header_too_large", "header_timeout", "body_timeout", "bad_request", "client_gone",
             "response_too_large", "shed_concurrency", "shed_lag", "hop_no_local", "hop_loop"), 0))
        # the data plane's own load (inflight, loop lag), for the status report; set by the data plane
        self.saturation: Callable[[], dict[str, Any]] | None = None
        self.own_stall_timeouts = 0  # per-try timeouts a stall of the router itself caused: not a cloud's fault
        self.sampler = Sampler(self.balancer, self.overall)
        # request ids and the predictions kept for feedback and live metrics (feedback.py)
        from orchestrator.router.feedback import KeptPredictions

        self.kept = KeptPredictions(self, capacity=cfg.feedback.keep) if cfg.feedback.keep else None
        self._tasks: list[asyncio.Task[None]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.handle_sighup = False
        # who answers: x-mco-router on every answer (the pod's name in a cluster)
        self.name = cfg.name or socket.gethostname()
        self.name_bytes = self.name.encode()
        # --workers N (workers.py): this process's index, the port it shares with its peers
        # (SO_REUSEPORT) and every worker's private loopback admin port, which the status
        # and /metrics of any worker read to add up all of them
        self.worker: WorkerInfo | None = WorkerInfo.from_env()
        # router.dataplane: rust: the link to the Rust process that forwards (rust.py)
        self.rust_link: RustLink | None = None

    @staticmethod
    def _check_unique(targets: list[RouterTargetConfig]) -> None:
        names = [t.name for t in targets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"router targets must have unique names; repeated: {', '.join(dupes)}",
                              hint="rename the targets so each cloud appears once")

    def _state(self, t: RouterTargetConfig, index: int) -> TargetState:
        cost = CostModel.for_target(t.pricing_key, vcpu=t.vcpu, memory_gb=t.memory_gb, replicas=t.replicas)
        own = self.cfg.cloud
        local = own is not None and t.cloud_name == own
        if own is not None:
            # cross-cloud: the answer leaves the target's cloud (its egress price) and the request
            # leaves the router's (the price of its own cloud's target); inside one cloud, no egress
            cost.egress_per_gb = 0.0 if local else cost.egress_per_gb
            cost.request_egress_per_gb = None if local else self._own_egress()
        return TargetState(cfg=t, index=index, cost=cost, local=local)

    def _own_egress(self) -> float | None:
        for t in self.cfg.targets:
            if t.cloud_name == self.cfg.cloud and t.pricing_key:
                from orchestrator.catalog import price

                return price(t.pricing_key).egress_gb
        return None

    # -- lifecycle ------------------------------------------------------------------
    async def startup(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.active.start({t.name: t.cfg.url for t in self.balancer.by_priority}, _health_paths(self.cfg.targets))
        self._tasks.append(self.loop.create_task(self.sampler.run(), name="router-sampler"))
        if self.kept is not None:
            # numpy takes a moment to import, holding the GIL: pay it before the router listens, not
            # while it serves (an import in a thread lagged the loop enough to shed requests)
            _warm_live_metrics()
            fb = self.cfg.feedback
            self._tasks.append(self.loop.create_task(self.kept.run(fb.refresh_s, fb.window_s, fb.drift_threshold),
                                                     name="router-live-metrics"))
        if self.handle_sighup and threading.current_thread() is threading.main_thread():
            self.loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self) -> None:
        try:
            self.reload_from_file()
        except Exception as exc:
            self.events.emit("targets_reloaded", None, error=str(exc))

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.passive.stop()
        await self.active.stop()
        if self.kept is not None:
            self.kept.reports.close()


    # -- traffic shares (a waves deploy) ---------------------------------------------
    def set_weights(self, weights: dict[str, int], releases: dict[str, str] | None = None,
                    models: dict[str, str] | None = None) -> None:
        """Change targets' weights in place (stats and health kept), and name the release each
        cloud serves for the kept predictions, and the model that release is (``models``: its
        live metrics count only that model's answers); every name must be a target."""
        unknown = sorted(set(weights) - set(self.balancer.targets))
        unknown += sorted((set(releases or {}) | set(models or {})) - set(self.balancer.targets))
        if unknown:
            raise ConfigError(f"no router target named {', '.join(unknown)}",
                              hint=f"targets: {', '.join(self.balancer.targets)}")
        states = list(self.balancer.by_priority)
        before = {t.name: t.cfg.weight for t in states}
        for t in states:
            if t.name in weights:
                t.cfg = t.cfg.model_copy(update={"weight": int(weights[t.name])})
        self.balancer.replace_targets(sorted(states, key=lambda t: t.index))
        if releases and self.kept is not None:
            self.kept.release_of.update(releases)
        if models and self.kept is not None:
            for cloud, digest in models.items():
                label = self.kept.release_of.get(cloud)
                if label is not None:
                    self.kept.release_model[(cloud, label)] = digest.removeprefix("sha256:")
        self.events.emit("weights_changed", None, before=before, weights={t.name: t.cfg.weight for t in states},
                         releases=dict(releases or {}), **({"models": dict(models)} if models else {}))

    # -- hot reload -----------------------------------------------------------------
    def set_targets(self, targets: list[RouterTargetConfig]) -> None:
        """Replace the targets; ones with the same name and URL keep their stats and health."""
        self._check_unique(targets)
        self.cfg = self.cfg.model_copy(update={"targets": list(targets)})
        old = self.balancer.targets
        states: list[TargetState] = []
        for i, t in enumerate(targets):
            prev = old.get(t.name)
            if prev is not None and prev.cfg.url == t.url:
                prev.cfg, prev.index = t, i
                fresh = self._state(t, i)
                prev.cost, prev.local = fresh.cost, fresh.local
                states.append(prev)
            else:
                states.append(self._state(t, i))
        self.passive.update([t.name for t in targets])
        self.balancer.replace_targets(states)
        if self.loop is not None:
            self.active.update({t.name: t.url for t in targets}, _health_paths(targets))
        self.events.emit("targets_reloaded", None, targets=[t.name for t in targets])

    def reload_from_file(self) -> None:
        if self.config_path is None:
            raise ConfigError("this router was not started from a config file, so there is nothing to re-read",
                              hint="use PUT /admin/targets instead")
        from orchestrator.config import load_config
        from orchestrator.router.settings import targets_from_config

        self.set_targets(targets_from_config(load_config(self.config_path)))

    # -- the router's own probes ------------------------------------------------------
    def probe(self, path: str) -> Reply:
        """``/healthz``: the process answers. ``/readyz``: *I can route somewhere*, at least one
        target is healthy. ``/readyz/local``: *my own cloud can serve*, a healthy target in
        ``router.cloud`` (the same as ``/readyz`` without one): what a global entry checks, so
        it stops sending to a cloud whose router is up but whose model is down, while that
        router still spills what reaches it during the DNS TTL."""
        if path == "/healthz":
            return json_reply(200, {"status": "alive", "router": self.name})
        healthy = self.balancer.healthy
        if path == "/readyz/local" and self.cfg.cloud is not None:
            healthy = tuple(t for t in healthy if t.local)
        body = {"ready": bool(healthy), "router": self.name, "cloud": self.cfg.cloud,
                "healthy_targets": [t.name for t in healthy]}
        if healthy:
            return json_reply(200, body)
        body["error"] = ("no healthy target in this router's cloud" if path == "/readyz/local" and self.cfg.cloud
                         else "no healthy target: this router cannot route anywhere")
        return json_reply(503, body, (b"retry-after", b"1"), (b"cache-control", b"no-store"))

    # -- reports (built in report.py) --------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What ``GET /admin/status`` answers, for in-process callers."""
        from orchestrator.router.report import status_report

        return status_report(self)


def _health_paths(targets: list[RouterTargetConfig]) -> dict[str, str]:
    """The targets checked on a path of their own (another cloud's router: ``/readyz/local``)."""
    return {t.name: t.health_path for t in targets if t.health_path}


def _warm_live_metrics() -> None:
    # numpy only: scikit-learn is imported by the live metrics' own child process
    # (monitoring/worker.py), never here
    try:
        import orchestrator.monitoring.live  # noqa: F401
    except ImportError:  # reported by /admin/live when asked, with the extra to install
        pass
