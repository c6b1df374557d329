"""The drill scenarios: what each one breaks, how it repairs, and its default objectives.

=================  ==========================================  ============================================
scenario           fault                                       objectives (defaults, overridable by flags)
=================  ==========================================  ============================================
cloud-outage       the whole cloud goes away (local: kill -9   RTO <= 2 s (local) / 10 s (kind), 0 client
                   of its server; kind: docker stop of its     errors, failback <= 15 s / 180 s after the
                   node), repaired after the outage            repair
pod-crash          the cloud's serving processes are killed;   RTO <= 2 s / 10 s, 0 client errors, failback
                   the platform restarts them by itself        <= 15 s / 180 s after the crash
latency            the cloud becomes slow (its model servers   traffic moves off it under ``latency`` and
                   are stopped 80 ms of every 100 ms)          ``cost``, stays under ``failover``; 0 errors
bad-release        a release whose server cannot become        every cloud rolls back by itself, no client
                   ready is deployed to every cloud            ever sees the bad model, 0 client errors
storage-outage     one cloud's artifact store is down during   the deploy completes on the other clouds and
                   a deploy                                    names the failed one, nothing half-written
                                                               is visible, 0 client errors
silent-bad-model   a model trained on permuted labels (ready,  the waves stop at the first cloud, which rolls
                   serving, its own card looks fine) is        back by itself; no other cloud ever serves it;
                   deployed with the waves strategy under      bad answers stay within the first step's share;
                   labelled traffic                            the abort names the metric; 0 client errors
region-loss        through the global entry: a whole cloud's   RTO <= 5 s, 0 client errors, failback
                   node stops, its routers and model together  <= 180 s after the node starts again
router-crash       through the global entry: one cloud's       0 client errors
                   router pods are deleted
=================  ==========================================  ============================================

``region-loss`` and ``router-crash`` go through the global entry: the traffic goes to the
entry, and the events come from the routers behind it (``drills/entry.py``). On kind those
are the routers in the clusters (``router.in_cluster``, which ``mco local up clusters``
turns on) and the HAProxy entry ``mco local up`` starts; on the local runtime, one router
process per cloud and the same HAProxy entry in front of them (``drills/local_entry.py``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.drills.objectives import Objectives
from orchestrator.errors import ConfigError
from orchestrator.model.bundle import Bundle, load_bundle, write_card

if TYPE_CHECKING:
    from orchestrator.drills.fleet import Fleet
    from orchestrator.drills.runner import DrillContext

__all__ = ["SCENARIOS", "Scenario", "get_scenario", "variant_bundle"]


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    policy: str  # router policy the drill runs with unless --policy says otherwise
    act: Callable[[DrillContext], None]
    objectives: Callable[[str, str], Objectives]  # (runtime, policy) -> defaults
    repair_is_fault: bool = False  # the platform repairs at once: failback counts from the fault
    recovery: bool = True  # takes a cloud away: RTO, detection and failback are measured
    # before the router and the traffic: (fleet, bundle, run_dir, progress) -> what act() finds in ctx.staged
    prepare: Callable[[Fleet, Bundle, Path, Callable[[str], None]], dict[str, Any]] | None = None
    entry: bool = False  # the traffic goes through the global entry to the routers in the clusters


def _outage_objectives(runtime: str, policy: str) -> Objectives:
    if runtime == "local":
        return Objectives(max_rto_s=2.0, max_errors=0, max_failback_s=15.0)
    return Objectives(max_rto_s=10.0, max_errors=0, max_failback_s=180.0)


def _latency_objectives(runtime: str, policy: str) -> Objectives:
    from orchestrator.router.balancer.policies import policy_class

    # a policy that ranks by measured latency moves traffic off a slow cloud; the others keep it there
    return Objectives(max_errors=0, expect_traffic_moves=policy_class(policy).needs_latency)


def _release_objectives(runtime: str, policy: str) -> Objectives:
    return Objectives(max_errors=0)


def _region_objectives(runtime: str, policy: str) -> Objectives:
    # failback: the cloud's router is back in the entry and its model serves (20 answers, a few
    # tenths of a second of its share), not one request another router retried there
    return Objectives(max_rto_s=5.0, max_errors=0, max_failback_s=180.0, failback_answers=20)


def router_crash(ctx: DrillContext) -> None:
    ctx.baseline()
    cloud = ctx.cloud
    from orchestrator.drills.fleet import require

    require(ctx.fleet, "crash_routers", "router-crash")
    ctx.act("fault", cloud, lambda: ctx.fleet.crash_routers(cloud))  # type: ignore[attr-defined]
    ctx.hold(max(ctx.timing.outage_s, 10.0))  # the Deployment makes new pods; the entry waits for them
    ctx.hold(ctx.timing.tail_s)


def cloud_outage(ctx: DrillContext) -> None:
    ctx.baseline()
    cloud = ctx.cloud
    ctx.act("fault", cloud, lambda: ctx.fleet.outage(cloud))
    try:
        ctx.hold(ctx.timing.outage_s)
    finally:  # even when interrupted: a drill never leaves a cloud broken
        ctx.act("repair", cloud, lambda: ctx.fleet.repair(cloud))
    ctx.mark("repaired", cloud)
    ctx.wait_failback(cloud)
    ctx.hold(ctx.timing.tail_s)


def pod_crash(ctx: DrillContext) -> None:
    ctx.baseline()
    cloud = ctx.cloud
    ctx.act("fault", cloud, lambda: ctx.fleet.crash_pods(cloud))
    ctx.wait_failback(cloud)
    ctx.hold(ctx.timing.tail_s)


def latency(ctx: DrillContext) -> None:
    ctx.baseline()
    cloud = ctx.cloud
    ctx.act("fault", cloud, lambda: ctx.fleet.slow(cloud))
    try:
        ctx.hold(max(ctx.timing.outage_s, 6.0))  # EWMA and p95 windows need a few seconds of evidence
    finally:
        ctx.act("repair", cloud, lambda: ctx.fleet.unslow(cloud))
    ctx.hold(ctx.timing.tail_s)


def _staged_release(name: str, *, break_model: bool = False) -> Callable[..., dict[str, Any]]:
    """A prepare step: a new release of the drill's bundle (``ctx.staged["release"]``), staged on the fleet."""

    def prepare(fleet: Fleet, bundle: Bundle, run_dir: Path, say: Callable[[str], None]) -> dict[str, Any]:
        version = "bad" if break_model else f"drill-{int(time.time())}"
        release = variant_bundle(bundle, run_dir / name, version=version, break_model=break_model)
        say(f"staging {release.ref}: {fleet.stage(release)}")
        return {"release": release}

    return prepare


def bad_release(ctx: DrillContext) -> None:
    ctx.baseline()
    before = {c: ctx.fleet.serving_digest(c) for c in ctx.fleet.clouds}
    bad = ctx.staged["release"]
    ctx.facts["bad_digest"] = bad.digest
    results = ctx.act("fault", None, lambda: ctx.fleet.release(bad), describe=f"deploy {bad.ref} (cannot become ready)")
    for cloud, res in results.items():
        if res.get("rolled_back"):
            ctx.mark("rollback", cloud, reason=res.get("reason", ""))
    ctx.hold(ctx.timing.tail_s)
    after = {c: ctx.fleet.serving_digest(c) for c in ctx.fleet.clouds}
    ctx.facts.update(rollout=results, serving_before=before, serving_after=after)
    failed = [c for c, r in results.items() if not r["ok"]]
    rolled = [c for c, r in results.items() if r.get("rolled_back")]
    ctx.check("rollout_fails", True, len(failed) == len(results), len(failed) == len(results),
              f"the rollout failed on {len(failed)} of {len(results)} clouds ({', '.join(failed) or 'none'})")
    ctx.check("rolled_back", True, len(rolled) == len(results), len(rolled) == len(results),
              f"rolled back automatically on {', '.join(rolled) or 'no cloud'}")
    unchanged = all(after[c] == before[c] for c in before)
    ctx.check("previous_release_serves", True, unchanged, unchanged,
              "every cloud still serves the previous release" if unchanged
              else f"serving digests changed: {after}")
    seen = sum(1 for r in ctx.records() if r.digest == bad.digest)
    ctx.check("bad_release_seen", 0, seen, seen == 0, f"{seen} client requests were answered by the bad release")


def storage_outage(ctx: DrillContext) -> None:
    ctx.baseline()
    cloud = ctx.cloud
    old = {c: ctx.fleet.serving_digest(c) for c in ctx.fleet.clouds}
    new = ctx.staged["release"]
    ctx.facts["new_digest"] = new.digest
    ctx.act("fault", cloud, lambda: ctx.fleet.store_outage(cloud))
    try:
        results = ctx.act("deploy", None, lambda: ctx.fleet.release(new), describe=f"deploy {new.ref}")
    finally:
        ctx.act("repair", cloud, lambda: ctx.fleet.store_repair(cloud))
    # Read the store once it answers again: what a reader would see after the outage.
    half = ctx.fleet.half_written(cloud, new.digest)
    ctx.hold(ctx.timing.tail_s)
    after = {c: ctx.fleet.serving_digest(c) for c in ctx.fleet.clouds}
    ctx.facts.update(rollout=results, serving_before=old, serving_after=after, half_written=half)
    others = [c for c in ctx.fleet.clouds if c != cloud]
    others_ok = all(results[c]["ok"] and after[c] == new.digest for c in others)
    ctx.check("deploy_completes_elsewhere", True, others_ok, others_ok,
              f"{', '.join(others)} serve the new release" if others_ok
              else f"not every other cloud serves the new release: {after}")
    reported = not results[cloud]["ok"] and bool(results[cloud].get("reason"))
    ctx.check("failed_cloud_reported", True, reported, reported,
              f"{cloud} reported: {results[cloud].get('reason')}" if reported else f"{cloud} was not reported as failed")
    kept = after[cloud] == old[cloud]
    ctx.check("failed_cloud_keeps_release", True, kept, kept,
              f"{cloud} still serves its previous release" if kept else f"{cloud} serves {after[cloud]}")
    ctx.check("nothing_half_written", [], half, not half,
              "no partial upload is visible" if not half else f"partial uploads visible in {cloud}: {half}")


# The silent-bad-model drill's analysis: small steps at first, then judged on labelled feedback.
# Macro F1 counts a class missing from a small window as 0 (the gate's code): 40 labelled answers and
# 0.7 keep a sound model clear of that; a model on permuted labels scores near 0.
SILENT_BAD_RULES = ["error_rate<0.05", "live_macro_f1>=0.7"]
# the config's `analysis` section, as the drill sets it (on kind: the copy the deploy reads)
SILENT_BAD_ANALYSIS: dict[str, Any] = {"require": SILENT_BAD_RULES, "steps": [10, 50, 100], "bake_s": 2.0,
                                       "max_wait_s": 60.0, "interval_s": 0.5, "min_samples": 40}
SILENT_BAD_WEIGHT = 100  # each cloud's usual weight: 10 % of it is still a whole number


def _permuted_model(fleet: Fleet, bundle: Bundle, run_dir: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """A prepare step: the drill bundle's model trained again on permuted labels (its card looks
    fine), staged on the fleet (on kind: its image built and loaded into the nodes)."""
    from orchestrator.errors import CapabilityError
    from orchestrator.model.train import TrainSpec, train_bundle

    if getattr(fleet, "rt", None) is None and not callable(getattr(fleet, "waves_release", None)):
        raise CapabilityError(f"the {fleet.runtime} runtime cannot deploy in waves, so it cannot run the "
                              "silent-bad-model drill", hint="run it with --runtime local or --runtime kind")
    data = bundle.card.get("training_data", {})
    spec = TrainSpec(dataset=str(data.get("dataset", "digits")), strategy=str(bundle.card.get("strategy", "multinomial")),
                     seed=int(data.get("seed", 42)), version="permuted-labels", permute_labels=7)
    say("training the silently bad model (labels permuted before the split)")
    bad = train_bundle(spec, run_dir / "silent-bad-model")
    say(f"staging {bad.ref}: {fleet.stage(bad)}")
    return {"release": bad}


def _waves_local(ctx: DrillContext, bad: Bundle) -> dict[str, Any]:
    """The engine in this process, on the local runtime's servers (``LocalWaveOps``)."""
    from orchestrator.config import AnalysisConfig
    from orchestrator.drills.local_waves import LocalWaveOps
    from orchestrator.releases.strategies.waves import RouterTraffic, WavePlan, default_waves, run_waves

    fleet: Any = ctx.fleet
    traffic = RouterTraffic([ctx.router.url], ctx.router.token)
    try:
        plan = WavePlan.from_config(default_waves(list(fleet.clouds), traffic.traffic(), None),
                                    AnalysisConfig(**SILENT_BAD_ANALYSIS))
        ops = LocalWaveOps(fleet.rt, bad, ctx.bundle, release="silently-bad", previous_release="current")
        return run_waves(plan, ops, traffic, note=ctx.progress)
    finally:
        traffic.close()


def _waves_kind(ctx: DrillContext, bad: Bundle) -> dict[str, Any]:
    """``mco deploy --strategy waves`` on the clusters, shifting traffic on the drill's router."""
    fleet: Any = ctx.fleet
    result = fleet.waves_release(bad, router_url=ctx.router.url, token=ctx.router.token,
                                 analysis=SILENT_BAD_ANALYSIS)
    ctx.facts["deploy"] = {k: result.get(k) for k in ("release", "status", "clouds")}
    return dict(result["waves"])


def waves_outcome(doc: dict[str, Any]) -> dict[str, Any]:
    """Where a waves rollout stopped and why, and what each step measured (for the report)."""
    waves = []
    for wave in doc.get("waves", []):
        steps = [{"percent": s.get("percent"), "verdict": s.get("verdict"), "waited_s": s.get("waited_s"),
                  "measured": {c["metric"]: c.get("value") for c in s.get("checks", [])},
                  "samples": {c["metric"]: c.get("samples") for c in s.get("checks", [])}}
                 for s in wave.get("steps", [])]
        waves.append({"wave": wave.get("wave"), "clouds": wave.get("clouds"), "status": wave.get("status"),
                      "steps": steps, "rollback": wave.get("rollback")})
    out: dict[str, Any] = {"status": doc.get("status"), "release": doc.get("release"), "waves": waves,
                           "rules": (doc.get("plan") or {}).get("rules"), "stopped_at": None,
                           "never_touched": doc.get("never_touched", [])}
    abort = doc.get("abort")
    if abort:
        check = abort.get("check") or {}
        out["stopped_at"] = {"wave": abort.get("wave"), "clouds": abort.get("clouds"), "step": abort.get("step"),
                             "reason": abort.get("reason"), "metric": check.get("metric"),
                             "value": check.get("value"), "rule": check.get("rule"), "samples": check.get("samples")}
    return out


def silent_bad_model(ctx: DrillContext) -> None:
    from orchestrator.model.datasets import load_dataset
    from orchestrator.testing.labelled import LabelledTraffic

    fleet: Any = ctx.fleet
    bad: Bundle = ctx.staged["release"]
    clouds = list(fleet.clouds)
    before = {c: fleet.serving_digest(c) for c in clouds}
    ctx.facts.update(bad_digest=bad.digest, serving_before=before,
                     bad_model_card_macro_f1=bad.card["evaluation"]["report"]["macro"]["f1"])
    ctx.router._call("PUT", "/admin/weights", {"weights": dict.fromkeys(clouds, SILENT_BAD_WEIGHT),
                                                "releases": dict.fromkeys(clouds, "current")})
    ds = load_dataset(str(bad.card["training_data"]["dataset"]))
    labelled = LabelledTraffic(ctx.router.url, ds.X, ds.y, rate=ctx.spec.labelled_rate).start()
    waves_run = _waves_local if getattr(fleet, "rt", None) is not None else _waves_kind
    try:
        ctx.baseline()
        start = time.time()
        doc = ctx.act("fault", None, lambda: waves_run(ctx, bad), describe=f"deploy {bad.ref} with --strategy waves")
        end = time.time()
        abort = doc.get("abort") or {}
        for wave in doc.get("waves", []):
            for step in wave.get("steps", []):
                ctx.mark(f"{step['percent']} % step", ", ".join(wave["clouds"]), ts=step["started_at"],
                         verdict=step.get("verdict"))
        if abort:
            ctx.mark("rollback", ", ".join(abort.get("clouds", [])), ts=abort.get("at"), reason=abort.get("reason"))
        ctx.hold(ctx.timing.tail_s)
    finally:
        answers = labelled.stop()
    after = {c: fleet.serving_digest(c) for c in clouds}
    records = ctx.records()
    ctx.rollout = waves_outcome(doc)
    ctx.facts.update(waves=doc, serving_after=after, labelled_answers=len(answers),
                     labelled_errors=labelled.feedback_errors[:5])
    first = doc["plan"]["waves"][0]
    stopped = doc["status"] == "rolled_back" and abort.get("wave") == 1 and len(doc["waves"]) == 1
    ctx.check("waves_stop_at_first_cloud", "wave 1", f"wave {abort.get('wave')}" if abort else "none", stopped,
              f"the waves stopped at wave 1 ({', '.join(first)})" if stopped
              else f"the waves did not stop at the first wave: {doc['status']}, {len(doc['waves'])} waves run")
    back = all(after[c] == before[c] for c in first)
    ctx.check("first_cloud_rolled_back", True, back, back,
              f"{', '.join(first)} serves its previous release again" if back else f"serving now: {after}")
    bad_clouds = sorted({a.cloud for a in answers if a.digest == bad.digest and a.cloud}
                        | {r.cloud for r in records if r.digest == bad.digest and r.cloud})
    others_clean = set(bad_clouds) <= set(first)
    ctx.check("others_never_served_it", list(first), bad_clouds, others_clean,
              "only the first wave's clouds ever answered with the bad model" if others_clean
              else f"the bad model answered from {', '.join(bad_clouds)}")
    usual = doc["usual_weights"]
    allowed = sum(usual[c] * doc["plan"]["steps"][0] / 100 for c in first)
    step_share = allowed / (allowed + sum(w for c, w in usual.items() if c not in first))
    during = [r for r in records if start <= r.sent <= end] + [a for a in answers if start <= a.sent <= end]
    bad_share = sum(1 for r in during if r.digest == bad.digest) / max(1, len(during))
    # the draw is random: twice the first step's share is the bound (about 10 % for 10 of 210)
    ctx.check("bad_answers_within_first_step", round(2 * step_share, 4), round(bad_share, 4),
              bad_share <= 2 * step_share, f"{bad_share:.1%} of the answers during the rollout came from the bad "
                                           f"model; the first step gives it {step_share:.1%} of the traffic")
    reason = str(abort.get("reason", ""))
    metric = (abort.get("check") or {}).get("metric")
    named = bool(metric) and str(metric) in reason
    ctx.check("abort_names_the_metric", "live_macro_f1", metric, named and metric == "live_macro_f1",
              f"abort reason: {reason}" if reason else "no abort reason")


SCENARIOS: dict[str, Scenario] = {
    s.name: s for s in (
        Scenario("cloud-outage", "the whole cloud goes away, then comes back", "failover", cloud_outage,
                 _outage_objectives),
        Scenario("pod-crash", "the cloud's serving processes are killed; the platform restarts them", "failover",
                 pod_crash, _outage_objectives, repair_is_fault=True),
        Scenario("latency", "one cloud becomes slow", "latency", latency, _latency_objectives),
        Scenario("bad-release", "a release that cannot become ready is deployed everywhere", "failover",
                 bad_release, _release_objectives, recovery=False, prepare=_staged_release("bad-release", break_model=True)),
        Scenario("storage-outage", "one cloud's artifact store is down during a deploy", "failover",
                 storage_outage, _release_objectives, recovery=False, prepare=_staged_release("new-release")),
        Scenario("silent-bad-model", "a model that serves but is wrong is deployed in waves under labelled traffic",
                 "weighted", silent_bad_model, _release_objectives, recovery=False, prepare=_permuted_model),
        Scenario("region-loss", "through the global entry, a whole cloud (its routers and model) goes away",
                 "locality", cloud_outage, _region_objectives, entry=True),
        Scenario("router-crash", "through the global entry, one cloud's router pods are deleted", "locality",
                 router_crash, _release_objectives, recovery=False, entry=True),
    )
}


def get_scenario(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise ConfigError(f"unknown drill scenario '{name}'", hint=f"choose from: {', '.join(SCENARIOS)}")
    return SCENARIOS[name]


def variant_bundle(bundle: Bundle, out: Path, *, version: str, break_model: bool = False) -> Bundle:
    """A copy of ``bundle`` as a new release (new digest); with ``break_model`` its model
    file is not ONNX, so it passes every digest check but its server can never become ready."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(bundle.path, out)
    card = dict(bundle.card)
    card["version"] = version
    if break_model:
        (out / "model.onnx").write_bytes(b"this is not an ONNX model: the server cannot load it\n")
    write_card(out, card)
    return load_bundle(out)
