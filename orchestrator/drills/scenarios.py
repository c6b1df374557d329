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
region-loss        through the global entry: a whole cloud's   RTO <= 5 s, 0 client errors, failback
                   node stops, its routers and model together  <= 180 s after the node starts again
router-crash       through the global entry: one cloud's       0 client errors
                   router pods are deleted
=================  ==========================================  ============================================

``region-loss`` and ``router-crash`` need the routers in the clusters (``router.in_cluster``)
and the local global entry (``mco local up global-entry``): the traffic goes to the entry,
and the events come from the routers in the clusters (``drills/entry.py``).
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
    return Objectives(max_rto_s=5.0, max_errors=0, max_failback_s=180.0)


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
