"""Run one drill: router up, steady traffic, break, watch, repair, measure, report.

    fleet ──► router (subprocess, the scenario's policy) ◄── traffic generator (records)
      ▲                     │ event log
      └── scenario acts ────┴──► measures ──► objectives ──► report (JSON, PNG, HTML)

Every drill leaves its report in ``runs/drills/<UTC timestamp>-<scenario>/``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.drills.fleet import Fleet, require
from orchestrator.drills.objectives import (
    READMIT_KINDS,
    SETTLE_ANSWERS,
    Check,
    Objectives,
    check_objectives,
    first_return,
    measure,
    settled,
)
from orchestrator.drills.scenarios import Scenario, get_scenario
from orchestrator.errors import ConfigError, DrillFailed, Unreachable
from orchestrator.model.bundle import Bundle
from orchestrator.testing.traffic import RequestRecord, TrafficConfig, TrafficGenerator, predict_body

__all__ = ["DrillContext", "DrillSpec", "DrillTiming", "new_run_dir", "run_drill"]

T = TypeVar("T")


@dataclass(frozen=True)
class DrillTiming:
    baseline_s: float = 3.0  # steady traffic before the fault
    outage_s: float = 5.0  # how long the fault lasts before the repair
    tail_s: float = 1.5  # traffic after the failback, so the timeline shows the steady state again
    ready_timeout_s: float = 30.0  # the router must see every target healthy within this

    def __post_init__(self) -> None:
        if self.baseline_s < 0.5:
            raise ConfigError(f"a baseline of {self.baseline_s:g} s is too short to compare against",
                              hint="give at least 0.5 seconds, e.g. --baseline 3")
        if not 0 < self.outage_s <= 600 or not 0 <= self.tail_s <= 600:
            raise ConfigError(f"an outage of {self.outage_s:g} s is out of range", hint="use 1 to 600 seconds")


@dataclass(frozen=True)
class DrillSpec:
    scenario: str
    cloud: str | None = None
    policy: str | None = None
    rate: float = 200.0
    # labelled requests/s (each answer's true label posted as feedback) beside ``rate``, for
    # the drills judged on live quality (silent-bad-model)
    labelled_rate: float = 60.0
    timing: DrillTiming = field(default_factory=DrillTiming)
    objectives: dict[str, Any] = field(default_factory=dict)  # overrides; None values are ignored
    runs_dir: Path = Path("runs/drills")
    # The router's settings (timeouts, health checks, outlier detection, retries) from the
    # config, so a drill measures the router as it is run; None: the defaults.
    router: Any = None


def new_run_dir(runs_dir: Path, scenario: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")[:-4] + "Z"
    path = Path(runs_dir) / f"{stamp}-{scenario}"
    path.mkdir(parents=True, exist_ok=False)
    return path


class DrillContext:
    """What a scenario sees: the fleet, the clock, marks, and the clients' records so far."""

    def __init__(self, *, fleet: Fleet, scenario: Scenario, spec: DrillSpec, objectives: Objectives, bundle: Bundle,
                 run_dir: Path, traffic: TrafficGenerator, router: Any, progress: Callable[[str], None]) -> None:
        self.fleet = fleet
        self.scenario = scenario
        self.spec = spec
        self.timing = spec.timing
        self.objectives = objectives
        self.bundle = bundle
        self.run_dir = run_dir
        self.traffic = traffic
        self.router = router
        self.progress = progress
        self.marks: list[dict[str, Any]] = []
        self.extra_checks: list[Check] = []
        self.facts: dict[str, Any] = {}
        self.staged: dict[str, Any] = {}  # what the scenario's prepare step made (e.g. the release to deploy)
        self.rollout: dict[str, Any] | None = None  # a release the drill made: where it stopped and why (report)
        self._cloud = spec.cloud
        if self._cloud is not None and self._cloud not in fleet.clouds:
            raise ConfigError(f"cloud '{self._cloud}' is not part of this deployment",
                              hint=f"choose from: {', '.join(fleet.clouds)}")

    # ---- time and marks -------------------------------------------------------------------

    @property
    def chosen_cloud(self) -> str | None:
        """The cloud the drill broke, if it has chosen one yet."""
        return self._cloud

    @property
    def cloud(self) -> str:
        if self._cloud is None:
            self._cloud = self.busiest_cloud()
        return self._cloud

    def mark(self, kind: str, target: str | None = None, *, ts: float | None = None, **detail: Any) -> dict[str, Any]:
        mark = {"ts": time.time() if ts is None else ts, "kind": kind, "target": target, "detail": detail or None}
        self.marks.append(mark)
        return mark

    def act(self, kind: str, target: str | None, action: Callable[[], T], *, describe: str | None = None) -> T:
        """Mark ``kind`` at the moment ``action`` starts, run it, and note what it did."""
        mark = self.mark(kind, target)
        result = action()
        what = describe or (result if isinstance(result, str) else None)
        mark["detail"] = {"action": what, "took_s": round(time.time() - mark["ts"], 3)}
        self.progress(f"{kind}{' ' + target if target else ''}: {what or 'done'} ({mark['detail']['took_s']:.1f} s)")
        return result

    def first(self, kind: str) -> float | None:
        return next((m["ts"] for m in self.marks if m["kind"] == kind), None)

    def hold(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def settle(self, limit_s: float = 5.0) -> bool:
        """Keep the traffic on until the latest requests are answered well, for at most ``limit_s``."""
        window = max(1.0, 1.5 * SETTLE_ANSWERS / self.spec.rate)  # room for enough requests at a low --rate
        deadline = time.monotonic() + limit_s
        while not settled(self.records(), now=time.time(), window_s=window, slow_s=self.objectives.slow_request_s):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def records(self) -> list[RequestRecord]:
        return list(self.traffic.records)

    def check(self, objective: str, limit: Any, value: Any, passed: bool, message: str) -> None:
        self.extra_checks.append(Check(objective, limit, value, bool(passed), message))

    # ---- observations ---------------------------------------------------------------------

    def baseline(self) -> None:
        self.progress(f"baseline: {self.spec.rate:g} requests/s for {self.timing.baseline_s:g} s")
        self.hold(self.timing.baseline_s)
        recs = self.records()
        if not any(r.ok for r in recs):
            errors = sorted({r.error or str(r.status) for r in recs})[:3]
            raise DrillFailed("no request succeeded through the router before the fault "
                              f"({len(recs)} sent; errors: {', '.join(errors) or 'none answered'})",
                              hint="the deployment is not serving; check `mco router status` and the model servers")

    def busiest_cloud(self) -> str:
        counts: dict[str, int] = {}
        for r in self.records():
            if r.ok and r.cloud:
                counts[r.cloud] = counts.get(r.cloud, 0) + 1
        if not counts:
            return self.fleet.clouds[0]
        return max(counts, key=lambda c: counts[c])

    def wait_failback(self, cloud: str) -> bool:
        """Wait until ``cloud`` answers clients again (or, if it carried no traffic before the
        fault, until the router readmits it). False when the failback objective's time ran out."""
        since = self.first("repair") or self.first("fault") or time.time()
        fault = self.first("fault") or since
        limit = self.objectives.max_failback_s or 60.0
        deadline = since + limit + 2.0
        carried = any(r.ok and r.cloud == cloud and r.sent < fault for r in self.records())
        self.progress(f"waiting for traffic to fail back to {cloud} (up to {limit:g} s)")
        while time.time() < deadline:
            if carried:
                if first_return(self.records(), cloud, fault=fault, repair=since,
                                answers=self.objectives.failback_answers) is not None:
                    return True
            else:
                events = _admin(self.router, "events")
                if any(e.get("target") == cloud and e.get("kind") in READMIT_KINDS and float(e["ts"]) >= since
                       for e in events):
                    return True
            time.sleep(0.1)
        return False


def _admin(router: Any, call: str) -> Any:
    """``router.status()`` / ``router.events()``, with HTTP failures as an mco error naming the log."""
    import httpx

    try:
        return getattr(router, call)()
    except httpx.HTTPError as exc:
        raise Unreachable(f"the drill's router did not answer its admin API ({call}): {exc}",
                          hint=f"see {getattr(router, 'log_path', 'the router log')}") from exc


# The drill's own: its targets, its policy, a free loopback port, events into the run directory, its token.
_DRILL_ROUTER_FIELDS = {"host", "port", "policy", "targets", "events_file", "token_env", "token_file"}


def _router_config(fleet: Fleet, policy: str, run_dir: Path, base: Any) -> Any:
    from orchestrator.config import RouterConfig, RouterTargetConfig
    from orchestrator.net import free_port

    targets = [RouterTargetConfig(name=t.cloud, url=t.url, priority=t.priority, pricing_key=t.pricing_key)
               for t in fleet.targets()]
    if not targets:
        raise ConfigError("there is nothing deployed to drill against", hint="deploy first (`mco deploy`)")
    data: dict[str, Any] = base.model_dump(exclude=_DRILL_ROUTER_FIELDS) if base is not None else {}
    data.update({"port": free_port(), "policy": policy, "targets": targets,
                 "events_file": run_dir / "router-events.jsonl"})
    return RouterConfig(**data)


def _wait_router_ready(router: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = _admin(router, "status")
        targets = status.get("targets", [])
        if targets and all(t.get("healthy") for t in targets):
            return
        time.sleep(0.1)
    down = [t.get("name") for t in status.get("targets", []) if not t.get("healthy")]
    raise DrillFailed(f"the router did not see every cloud healthy within {timeout:g} s (not healthy: "
                      f"{', '.join(map(str, down)) or 'unknown'})",
                      hint="a drill starts from a healthy deployment; check the model servers")


def cloud_table(router_status: dict[str, Any], records: list[RequestRecord]) -> list[dict[str, Any]]:
    """Per cloud: what the router measured and priced, and how many answers clients got from it."""
    answered: dict[str, int] = {}
    for r in records:
        if r.ok and r.cloud:
            answered[r.cloud] = answered.get(r.cloud, 0) + 1
    rows = []
    for t in router_status.get("targets", []):
        errors = t.get("errors") or {}
        rows.append({
            "name": t.get("name"), "healthy": t.get("healthy"), "requests": t.get("requests"),
            "client_answers": answered.get(str(t.get("name")), 0),
            "errors": sum(v for v in errors.values() if isinstance(v, (int, float))) if isinstance(errors, dict)
            else errors,
            "p50_ms": t.get("p50_ms"), "p95_ms": t.get("p95_ms"), "p99_ms": t.get("p99_ms"),
            "pricing_key": t.get("pricing_key"), "cost_per_hour": t.get("cost_per_hour"),
            "cost_per_1k_requests": t.get("cost_per_1k_requests"),
        })
    return rows


def run_drill(fleet: Fleet, spec: DrillSpec, *, bundle: Bundle,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the drill ``spec`` against ``fleet``; returns the summary (also in report.json)."""
    from orchestrator.drills.report import write_report
    from orchestrator.router import RouterProcess

    say = progress or (lambda _msg: None)
    scenario = get_scenario(spec.scenario)
    policy = spec.policy or scenario.policy
    objectives = scenario.objectives(fleet.runtime, policy).override(**spec.objectives)
    run_dir = new_run_dir(spec.runs_dir, scenario.name)
    cfg = _router_config(fleet, policy, run_dir, spec.router)
    body = predict_body(int(bundle.card["input_schema"]["n_features"]))
    token = secrets.token_urlsafe(24)
    # Before the router and the traffic: staging is not what the drill measures.
    staged = scenario.prepare(fleet, bundle, run_dir, say) if scenario.prepare is not None else {}
    entry_url = ""
    if scenario.entry:
        # through the global entry to the routers in the clusters (drills/entry.py)
        for method in ("entry_url", "entry_routers"):
            require(fleet, method, scenario.name)
        entry_url = fleet.entry_url()  # type: ignore[attr-defined]
        say(f"through the global entry {entry_url} to the routers in {', '.join(fleet.clouds)}")
        router_cm: Any = nullcontext(fleet.entry_routers())  # type: ignore[attr-defined]
    else:
        say(f"starting the router ({policy} policy) in front of {', '.join(fleet.clouds)}")
        router_cm = RouterProcess(cfg, token=token, state_dir=run_dir / "router")
    with router_cm as router:
        _wait_router_ready(router, spec.timing.ready_timeout_s)
        url = f"{entry_url}/v1/predict" if scenario.entry else f"{router.url}/v1/predict"
        traffic = TrafficGenerator(TrafficConfig(url=url, rate=spec.rate, body=body))
        ctx = DrillContext(fleet=fleet, scenario=scenario, spec=spec, objectives=objectives, bundle=bundle,
                           run_dir=run_dir, traffic=traffic, router=router, progress=say)
        ctx.staged.update(staged)
        traffic.start()
        try:
            scenario.act(ctx)
            if not ctx.settle():
                say("the latest requests still failed or were slow when the traffic stopped")
        finally:
            records = traffic.stop()
        events = list(_admin(router, "events"))
        status = _admin(router, "status")
    start = traffic.started_at or (records[0].sent if records else time.time())
    end = max([traffic.stopped_at or start] + [r.done for r in records])
    fault = ctx.first("fault")
    repair = fault if scenario.repair_is_fault else ctx.first("repair")
    faulted = ctx.chosen_cloud
    measures = measure(records, events, start=start, fault=fault, repair=repair, end=end, faulted=faulted,
                       objectives=objectives, recovery=scenario.recovery, self_healing=scenario.repair_is_fault)
    checks = check_objectives(measures, objectives) + ctx.extra_checks
    passed = all(c.passed for c in checks)
    missed = [f"{c.objective}: {c.message}" for c in checks if not c.passed]
    clouds = cloud_table(status, records)
    report: dict[str, Any] = {
        "scenario": scenario.name, "description": scenario.summary, "runtime": fleet.runtime, "policy": policy,
        "cloud": faulted, "passed": passed, "missed": missed,
        "rto_seconds": measures.rto_seconds, "client_errors": measures.client_errors,
        "requests": measures.requests, "failback_seconds": measures.failback_seconds,
        "report": str(run_dir / "timeline.html"), "run_dir": str(run_dir),
        "objectives": objectives.__dict__, "checks": [c.as_dict() for c in checks],
        "measures": measures.as_dict(), "clouds": clouds, "facts": ctx.facts, "rate": spec.rate,
        **({"rollout": ctx.rollout} if ctx.rollout is not None else {}),
        # what counted as a failed try or a failed check in this run
        "router": {"per_try_timeout_s": cfg.retries.per_try_timeout_s, "attempts": cfg.retries.attempts,
                   "health_timeout_s": cfg.health.timeout_s},
        "started": datetime.fromtimestamp(start, UTC).isoformat(timespec="milliseconds"),
        "duration_s": round(end - start, 3),
    }
    say("writing the report")
    files = write_report(run_dir, report, records, events, ctx.marks, start=start, end=end, clouds=fleet.clouds)
    report["files"] = files
    return report
