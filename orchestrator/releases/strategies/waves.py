"""``waves``: cloud by cloud, each wave judged on the model's live metrics before the next.

    for each wave (``deploy.waves``; default: the least-traffic cloud first, one per wave):
        drain    the wave's clouds get weight 0 on every router (the others keep serving)
        deploy   the new release replaces the old one on the wave's clouds (``CloudOps``)
        steps    weight = usual x 10 %, 50 %, 100 % (``analysis.steps``); after each step:
          bake   ``analysis.bake_s``
          judge  ``analysis.require`` on each router's live metrics of (cloud, new release),
                 counted from the wave's start; a rule with too few samples is inconclusive
                 and the step waits, up to ``analysis.max_wait_s``, then the wave fails saying so
        fail     the wave's clouds roll back, the weights go back to the usual ones, later
                 waves' clouds are never touched; the failing check and its value are recorded
        Ctrl-C   the same as a failure, with the reason "interrupted by the operator"

A cloud's share moves through the routers' weights: at step *p* the wave's cloud gets
*p* % of its usual weight, and the rest of its traffic goes to the other clouds, which
still serve the previous release. The router must honour weights (the ``weighted``
policy, or ``failover`` with equal priorities); the strategy checks before it changes
anything. The engine (``run_waves``) knows neither Kubernetes nor HTTP: ``CloudOps``
changes a cloud's release (``KubeWaveOps`` here, the local runtime's in ``drills``) and
``Traffic`` moves shares and reads live metrics (``RouterTraffic``: the admin API).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.errors import ConfigError, MCOError, ReleaseError
from orchestrator.monitoring.rules import check_rules
from orchestrator.releases.strategies import DeployJob, Strategy, register_strategy

if TYPE_CHECKING:
    from orchestrator.config import AnalysisConfig, MCOConfig
    from orchestrator.releases.deployer import DeployResult

__all__ = ["CloudOps", "RouterTraffic", "Traffic", "WavePlan", "Waves", "default_waves", "restore_after_kill",
           "run_waves"]

Note = Callable[[str], None]


class CloudOps(Protocol):
    """How a wave changes the release its clouds serve."""

    release: str  # the new release's label (what the routers group live metrics by)
    model_digest: str | None  # its model: the routers judge only that model's answers as the release

    def deploy(self, clouds: list[str]) -> dict[str, str | None]: ...  # cloud -> error (None: serving it)

    def rollback(self, clouds: list[str], reason: str) -> dict[str, str | None]: ...

    def previous(self, cloud: str) -> str: ...  # the release label a cloud served before

    def skip(self, clouds: list[str], reason: str) -> None: ...  # never touched: record why

    def record(self, doc: dict[str, Any]) -> None: ...  # the analysis so far (after every step)


class Traffic(Protocol):
    """The routers: shares and live metrics."""

    def weights(self) -> dict[str, int]: ...

    def traffic(self) -> dict[str, float]: ...  # recent requests/s per cloud

    def check_weights_honoured(self) -> None: ...  # raises ConfigError when a router ignores weights

    def set(self, weights: dict[str, int], releases: dict[str, str], models: dict[str, str] | None = None,
            ) -> None: ...

    def live(self, window_s: float) -> list[list[dict[str, Any]]]: ...  # per router: its groups


@dataclass(frozen=True)
class WavePlan:
    waves: list[list[str]]
    rules: list[str]
    steps: list[int] = field(default_factory=lambda: [10, 50, 100])
    bake_s: float = 30.0
    max_wait_s: float = 120.0
    interval_s: float = 2.0
    min_samples: int = 50

    @classmethod
    def from_config(cls, waves: list[list[str]], analysis: AnalysisConfig) -> WavePlan:
        return cls(waves=waves, rules=list(analysis.require), steps=list(analysis.steps), bake_s=analysis.bake_s,
                   max_wait_s=analysis.max_wait_s, interval_s=analysis.interval_s, min_samples=analysis.min_samples)


def default_waves(clouds: list[str], traffic: dict[str, float], configured: list[list[str]] | None) -> list[list[str]]:
    """``deploy.waves`` (only the chosen clouds; any chosen cloud it leaves out goes last,
    alone), else one cloud a wave, the least traffic first (ties: the config's order)."""
    if configured:
        waves = [[c for c in wave if c in clouds] for wave in configured]
        waves = [w for w in waves if w]
        listed = {c for w in waves for c in w}
        return waves + [[c] for c in clouds if c not in listed]
    order = sorted(range(len(clouds)), key=lambda i: (traffic.get(clouds[i], 0.0), i))
    return [[clouds[i]] for i in order]


def _scaled(usual: int, percent: int) -> int:
    return max(1, round(usual * percent / 100)) if usual > 0 else 0


def _judge(plan: WavePlan, per_router: list[list[dict[str, Any]]], cloud: str, release: str) -> list[dict[str, Any]]:
    """Every rule on every router for (cloud, release): the worst verdict per rule wins."""
    worst: dict[str, dict[str, Any]] = {}
    rank = {"not_applicable": 0, "passed": 0, "inconclusive": 1, "failed": 2}
    for i, groups in enumerate(per_router):
        group = next((g for g in groups if g["cloud"] == cloud and g["release"] == release), {})
        for check in check_rules(plan.rules, group, min_samples=plan.min_samples):
            row = {**check.as_dict(), "cloud": cloud, "router": i}
            if check.rule not in worst or rank[check.verdict] > rank[worst[check.rule]["verdict"]]:
                worst[check.rule] = row
    if not plan.rules:  # nothing to judge by: the bake is the whole analysis
        return []
    return list(worst.values())


def run_waves(plan: WavePlan, ops: CloudOps, traffic: Traffic, *, note: Note = lambda s: None,
              sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Run the waves (see the module docstring); returns the record, also given to ``ops.record``."""
    traffic.check_weights_honoured()
    usual = traffic.weights()
    missing = sorted({c for w in plan.waves for c in w} - set(usual))
    if missing:
        raise ConfigError(f"the routers have no target named {', '.join(missing)}",
                          hint="the waves strategy shifts traffic by router target: name targets after the clouds")
    doc: dict[str, Any] = {"strategy": "waves", "release": ops.release, "status": "in_progress",
                           "plan": {"waves": plan.waves, "steps": plan.steps, "rules": plan.rules,
                                    "bake_s": plan.bake_s, "max_wait_s": plan.max_wait_s,
                                    "min_samples": plan.min_samples},
                           "usual_weights": usual, "waves": [], "started_at": time.time()}
    releases = {c: ops.previous(c) for c in usual}
    ops.record(doc)
    for n, clouds in enumerate(plan.waves, start=1):
        wave: dict[str, Any] = {"wave": n, "clouds": clouds, "status": "in_progress", "steps": [],
                                "started_at": time.time()}
        doc["waves"].append(wave)
        try:
            failure = _one_wave(plan, ops, traffic, usual, releases, wave, doc, note, sleep)
        except KeyboardInterrupt:
            failure = {"reason": "interrupted by the operator (Ctrl-C)", "check": None}
            doc["status"] = "interrupted"
        except MCOError as exc:  # a router or cluster that fails mid-wave: the wave cannot be judged, so it goes
            failure = {"reason": f"the wave could not go on: {exc.message}", "check": None}
        wave["finished_at"] = time.time()
        if failure is None:
            wave["status"] = "passed"
            for c in clouds:
                releases[c] = ops.release
            ops.record(doc)
            continue
        _abort(plan, ops, traffic, usual, releases, wave, doc, failure, note)
        return doc
    doc["status"] = "deployed"
    doc["finished_at"] = time.time()
    ops.record(doc)
    return doc


def _abort(plan: WavePlan, ops: CloudOps, traffic: Traffic, usual: dict[str, int], releases: dict[str, str],
           wave: dict[str, Any], doc: dict[str, Any], failure: dict[str, Any], note: Note) -> None:
    clouds = wave["clouds"]
    reason = failure["reason"]
    note(f"wave {wave['wave']} ({', '.join(clouds)}) fails: {reason}; rolling back")
    wave["status"] = "rolled_back"
    doc["abort"] = {"wave": wave["wave"], "clouds": clouds, **failure, "at": time.time()}
    if doc["status"] != "interrupted":
        doc["status"] = "rolled_back"
    # A second Ctrl-C must not leave the wave half rolled back: finish, then stop.
    for attempt in range(3):
        try:
            # the wave's clouds are drained first, so no more answers come from the release being removed
            traffic.set(dict.fromkeys(clouds, 0), {})
            errors = ops.rollback(clouds, reason)
            traffic.set(usual, releases)
            break
        except KeyboardInterrupt:
            note("the rollback is finishing; interrupting it would leave the wave half done")
            if attempt == 2:
                raise
    wave["rollback"] = {c: (e or "ok") for c, e in errors.items()}
    later = [c for w in doc["plan"]["waves"][wave["wave"]:] for c in w]
    if later:
        ops.skip(later, f"wave {wave['wave']} failed: {reason}")
    doc["never_touched"] = later
    doc["finished_at"] = time.time()
    ops.record(doc)


def _one_wave(plan: WavePlan, ops: CloudOps, traffic: Traffic, usual: dict[str, int], releases: dict[str, str],
              wave: dict[str, Any], doc: dict[str, Any], note: Note, sleep: Callable[[float], None],
              ) -> dict[str, Any] | None:
    """One wave; None when it passes, else what failed."""
    clouds = wave["clouds"]
    new = ops.release
    traffic.set(dict.fromkeys(clouds, 0), {})
    note(f"wave {wave['wave']}: deploying release {new} to {', '.join(clouds)} (drained)")
    errors = ops.deploy(clouds)
    failed = {c: e for c, e in errors.items() if e}
    if failed:
        return {"reason": "deploy failed: " + "; ".join(f"{c}: {e}" for c, e in failed.items()), "check": None}
    wave_started = time.time()
    for percent in plan.steps:
        weights = {c: _scaled(usual[c], percent) for c in clouds}
        # the release's live metrics count its model's answers only: an old pod still answering
        # on a kept-alive connection after the rollout is not judged as the new release
        traffic.set(weights, dict.fromkeys(clouds, new),
                    dict.fromkeys(clouds, ops.model_digest) if ops.model_digest else None)
        step: dict[str, Any] = {"percent": percent, "weights": weights, "started_at": time.time()}
        wave["steps"].append(step)
        ops.record(doc)
        note(f"wave {wave['wave']}: {percent} % of the usual share; baking {plan.bake_s:g} s")
        sleep(plan.bake_s)
        waited = 0.0
        while True:
            per_router = traffic.live(max(1.0, time.time() - wave_started))
            checks = [row for c in clouds for row in _judge(plan, per_router, c, new)]
            step["checks"] = checks
            step["waited_s"] = round(waited, 3)
            failing = [c for c in checks if c["verdict"] == "failed"]
            if failing:
                first = failing[0]
                step["verdict"] = "failed"
                return {"reason": f"{first['metric']} is {first['value']:.4g} on {first['cloud']}, "
                                  f"needs {first['rule'][len(first['metric']):]}",
                        "check": first, "step": percent}
            waiting = [c for c in checks if c["verdict"] == "inconclusive"]
            if not waiting:
                step["verdict"] = "passed"
                break
            if waited >= plan.max_wait_s:
                step["verdict"] = "inconclusive"
                first = waiting[0]
                return {"reason": f"inconclusive: {first['metric']} had {first['samples']} samples on "
                                  f"{first['cloud']} after waiting {waited:.0f} s (needs {plan.min_samples})",
                        "check": first, "step": percent}
            ops.record(doc)
            sleep(plan.interval_s)
            waited += plan.interval_s
        ops.record(doc)
        note(f"wave {wave['wave']}: {percent} % passed " + ", ".join(
            f"{c['metric']}={c['value']:.4g}" for c in step["checks"] if c["value"] is not None))
    return None


# ---------------------------------------------------------------------------- the routers


class RouterTraffic:
    """Traffic through the routers' admin API (``router/admin.py``): every router gets the
    same weights; live metrics are read from each."""

    def __init__(self, urls: list[str], token: str, *, timeout_s: float = 30.0) -> None:
        import httpx

        if not urls:
            raise ConfigError("the waves strategy needs the routers' admin URLs",
                              hint="set deploy.routers, e.g. [http://127.0.0.1:8088]")
        self.urls = [u.rstrip("/") for u in urls]
        self.client = httpx.Client(timeout=timeout_s, headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self.client.close()

    def _call(self, method: str, url: str, path: str, body: Any = None) -> Any:
        import httpx

        try:
            resp = self.client.request(method, url + path, json=body)
        except httpx.HTTPError as exc:
            raise ReleaseError(f"router {url} did not answer {method} {path}: {type(exc).__name__}",
                               hint="check deploy.routers and that the routers run") from exc
        if resp.status_code != 200:
            raise ReleaseError(f"router {url} answered {method} {path} with HTTP {resp.status_code}: {resp.text[:200]}",
                               hint="check the router token ($MCO_ROUTER_TOKEN or router.token_file)")
        return resp.json()

    def weights(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._call("GET", self.urls[0], "/admin/weights")["weights"].items()}

    def traffic(self) -> dict[str, float]:
        rps: dict[str, float] = {}
        for url in self.urls:
            for t in self._call("GET", url, "/admin/status").get("targets", []):
                rps[t["name"]] = rps.get(t["name"], 0.0) + float(t.get("recent_rps") or 0.0)
        return rps

    def check_weights_honoured(self) -> None:
        for url in self.urls:
            info = self._call("GET", url, "/admin/weights")
            priorities = set(info.get("priorities", {}).values())
            if info["policy"] != "weighted" and not (info["policy"] == "failover" and len(priorities) <= 1):
                raise ConfigError(f"router {url} uses the '{info['policy']}' policy, which does not share traffic "
                                  "by weight, so a waves deploy cannot move a cloud's share",
                                  hint="set router.policy: weighted (or failover with equal priorities)")

    def set(self, weights: dict[str, int], releases: dict[str, str], models: dict[str, str] | None = None,
            ) -> None:
        body: dict[str, Any] = {"weights": weights, "releases": releases}
        if models:
            body["models"] = models
        for url in self.urls:
            self._call("PUT", url, "/admin/weights", body)

    def live(self, window_s: float) -> list[list[dict[str, Any]]]:
        return [self._call("GET", url, f"/admin/live?window_s={window_s:.3f}")["groups"] for url in self.urls]


def router_token(cfg: MCOConfig) -> str:
    """The routers' admin token: ``router.token_env`` in the environment, else ``router.token_file``."""
    from orchestrator.router.settings import read_token  # the one reader of the token (a file or the env)

    token = read_token(cfg.router, base=cfg.source.parent if cfg.source else None)
    if not token:
        raise ConfigError(f"the waves strategy needs the routers' admin token: ${cfg.router.token_env} is not set",
                          hint=f"export {cfg.router.token_env}, or set router.token_file")
    return token


def restore_after_kill(store: Any, traffic: Traffic, note: Note) -> int | None:
    """A waves deploy killed mid-wave (-9, a lost machine) left its cloud at a step's share
    and its record ``in_progress``. Under the lock, before anything else: give the routers
    the usual weights it recorded (else they would pass for the usual ones now), and record
    the waves as interrupted. Returns that release's number, if any."""
    newest = store.list(limit=1)
    if not newest or newest[0].analysis is None or newest[0].analysis.get("status") != "in_progress":
        return None
    rel, doc = newest[0], dict(newest[0].analysis)
    usual = {str(c): int(w) for c, w in (doc.get("usual_weights") or {}).items()}
    if usual:
        traffic.set(usual, {})
    note(f"release {rel.number}'s waves deploy ended mid-wave without finishing; the routers' usual weights "
         f"({', '.join(f'{c} {w}' for c, w in usual.items())}) are back")
    doc.update(status="interrupted", finished_at=time.time(),
               interrupted={"reason": "the deploy process ended mid-wave (killed, or its machine went away)",
                            "restored_weights": usual, "restored_at": time.time()})
    for wave in doc.get("waves", []):
        if wave.get("status") == "in_progress":
            wave["status"] = "interrupted"
    store.set_analysis(rel.number, doc)
    return int(rel.number)


# ---------------------------------------------------------------------------- the strategy


@register_strategy
class Waves(Strategy):
    name = "waves"
    summary = "cloud by cloud; each wave's traffic grows in steps and is judged on live metrics"

    def run(self, job: DeployJob) -> DeployResult:
        from orchestrator.releases.strategies.kube_waves import KubeWaveOps

        traffic = job.extra.get("traffic") or RouterTraffic(job.cfg.deploy.routers, router_token(job.cfg))
        note = job.extra.get("note") or getattr(job.progress, "note", None) or (lambda text: None)
        try:
            # before the release is recorded: a router that cannot move a share changes nothing
            traffic.check_weights_honoured()
            clouds = [t.cloud for t in job.targets if t.cloud not in job.failed_before_apply]
            if job.failed_before_apply:
                raise ReleaseError("a waves deploy needs every cloud ready before it starts: " + "; ".join(
                    f"{c}: {r} ({d})" for c, (r, d) in job.failed_before_apply.items()))
            with job.lock:
                restore_after_kill(job.store, traffic, note)
                waves = default_waves(clouds, traffic.traffic(), job.cfg.deploy.waves)
                plan = WavePlan.from_config(waves, job.cfg.analysis)
                ops = KubeWaveOps(job)
                if ops.plan.unchanged:  # nothing new to judge: re-apply and watch, as all-at-once does
                    from orchestrator.releases.strategies.all_at_once import AllAtOnce

                    return AllAtOnce().run(job)
                try:
                    run_waves(plan, ops, traffic, note=note)
                except MCOError as exc:
                    ops.fail_rest(exc.message)
                    raise
                return ops.result()
        finally:
            if isinstance(traffic, RouterTraffic):
                traffic.close()
