"""The one planning rule and the one history writer, shared by ``mco deploy`` and Pulumi.

    plan_release(store, clouds, render)   is this release unchanged against what every cloud
                                          runs (per the history), and which number does it carry?
    begin_release(store, planned=..., …)  record a new release, refusing if its number moved.
    record_applied(store, plan, …)        write a release someone else applied (``pulumi up``)
                                          as deployed: the same rule, the same writer.

"Unchanged" means: every cloud has a current release, and rendering the new values with
that cloud's own current release number gives exactly the objects the history recorded for
it, apart from the release annotation (a rollback records the manifests of the release it
went back to, which carry that older number). Then nothing new is recorded; the recorded
objects are re-applied as they are. Otherwise the objects carry the next free number.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import ReleaseError
from orchestrator.kube.render import ANNOTATION_RELEASE
from orchestrator.releases.state.base import History
from orchestrator.releases.store import CloudPlan, CloudRelease

__all__ = ["ReleasePlan", "begin_release", "plan_release", "record_applied", "same_objects"]

Obj = dict[str, Any]
Render = Callable[[str, "int | None"], list[Obj]]  # (cloud, release number) -> objects


def _without_release(objs: list[Obj]) -> list[Obj]:
    out = copy.deepcopy(objs)
    for obj in out:
        annotations = obj.get("metadata", {}).get("annotations") or {}
        annotations.pop(ANNOTATION_RELEASE, None)
    return out


def same_objects(a: list[Obj], b: list[Obj]) -> bool:
    """Equal apart from the release number they carry."""
    return _without_release(a) == _without_release(b)


@dataclass(frozen=True)
class ReleasePlan:
    number: int                              # the release number the objects carry
    unchanged: bool                          # every cloud already runs exactly these objects
    objects: dict[str, list[Obj]]            # cloud -> objects to apply (the recorded ones when unchanged)
    current: dict[str, CloudRelease | None]  # cloud -> what the history says runs there


def plan_release(store: History | None, clouds: Iterable[str], render: Render, *,
                 blocked: Iterable[str] = ()) -> ReleasePlan:
    """Decide "unchanged" and the next release number; ``store`` None is an empty history.

    ``blocked`` names clouds that cannot be changed this time (their image failed to get
    there): a release that leaves one out is not unchanged.
    """
    names = list(clouds)
    current: dict[str, CloudRelease | None] = {c: store.current(c) if store is not None else None for c in names}
    if not list(blocked) and names and all(
            cur is not None and same_objects(cur.manifests, render(cloud, cur.release)) for cloud, cur in current.items()):
        recorded = {cloud: cur.manifests for cloud, cur in current.items() if cur is not None}
        number = max(cur.release for cur in current.values() if cur is not None)
        return ReleasePlan(number, True, recorded, current)
    number = (store.latest_number() if store is not None else 0) + 1
    return ReleasePlan(number, False, {c: render(c, number) for c in names}, current)


def begin_release(store: History, *, planned: int | None, kind: str, model_digest: str,
                  clouds: dict[str, CloudPlan], **fields: Any) -> int:
    """Record a new release (every cloud ``pending``); its number must be the one ``planned``,
    since the manifests already carry it."""
    nxt = store.latest_number() + 1
    if planned is not None and nxt != planned:
        raise ReleaseError(
            f"mco's history moved on while this release was being prepared: release {planned} was planned, "
            f"but the next free number is {nxt} (another deploy ran)",
            hint="deploy again; the release is planned against the new history")
    number = store.begin(kind=kind, model_digest=model_digest, clouds=clouds, **fields)
    if planned is not None and number != planned:  # cannot happen under the lock
        raise ReleaseError(f"release number moved from {planned} to {number} while holding the lock")
    return number


def record_applied(store: History, *, planned: int, model_digest: str, clouds: dict[str, CloudPlan],
                   bundle_ref: str | None, created_by: str, detail: str) -> int:
    """Record objects another tool applied and saw ready, as a deployed release; returns its number.

    When every cloud's current release already holds these objects (a refresh, a retried
    update, or an unchanged plan), nothing is written and that release's number is returned.
    """
    current = {cloud: store.current(cloud) for cloud in clouds}
    if all(cur is not None and same_objects(cur.manifests, plan.manifests) for cloud, plan in clouds.items()
           for cur in (current[cloud],)):
        return max(cur.release for cur in current.values() if cur is not None)
    number = begin_release(store, planned=planned, kind="deploy", model_digest=model_digest, clouds=clouds,
                           bundle_ref=bundle_ref, created_by=created_by)
    for cloud, plan in clouds.items():
        store.update_cloud(number, cloud, status="deployed", ready_replicas=plan.replicas, endpoint=plan.endpoint,
                           detail=detail)
    store.finish(number)
    return number
