"""The one planning rule ("unchanged", the next number) and the one writer, on a real SQLite history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import ReleaseError
from orchestrator.kube.render import ReleaseValues, render_release
from orchestrator.releases.plan import plan_release, record_applied, same_objects
from orchestrator.releases.store import CloudPlan, ReleaseStore

MODEL_A, MODEL_B = "a" * 64, "b" * 64
IMAGE = "sha256:" + "1" * 64
CLOUDS = ("aws", "gcp")


def _render(model: str) -> Any:
    def render(cloud: str, release: int | None) -> list[dict[str, Any]]:
        return render_release("kind", ReleaseValues(image=IMAGE, model_digest=model, replicas=2, namespace="mco",
                                                    node_port=30080, cloud=cloud, release=release))
    return render


def _plans(model: str, objects: dict[str, list[dict[str, Any]]]) -> dict[str, CloudPlan]:
    return {c: CloudPlan(model_digest=model, image_ref=IMAGE, image_digest=IMAGE, overlay="kind", replicas=2,
                         manifests=objects[c]) for c in objects}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReleaseStore]:
    with ReleaseStore(tmp_path / "releases.db", "digits") as s:
        yield s


def _record(store: ReleaseStore, model: str) -> int:
    plan = plan_release(store, CLOUDS, _render(model))
    return record_applied(store, planned=plan.number, model_digest=model, clouds=_plans(model, plan.objects),
                          bundle_ref=None, created_by="test", detail="test")


def test_an_empty_history_plans_release_one(store: ReleaseStore) -> None:
    plan = plan_release(store, CLOUDS, _render(MODEL_A))
    assert plan.number == 1 and not plan.unchanged
    assert plan.objects["aws"] == _render(MODEL_A)("aws", 1)
    assert plan_release(None, CLOUDS, _render(MODEL_A)).number == 1


def test_what_runs_everywhere_is_unchanged_and_a_new_model_plans_the_next_number(store: ReleaseStore) -> None:
    before = store.latest_number()
    first = _record(store, MODEL_A)
    assert first == before + 1
    again = plan_release(store, CLOUDS, _render(MODEL_A))
    assert again.unchanged and again.number == first
    assert again.objects == {c: store.current(c).manifests for c in CLOUDS}  # the recorded objects, as they are
    other = plan_release(store, CLOUDS, _render(MODEL_B))
    assert not other.unchanged and other.number == first + 1


def test_a_cloud_with_no_release_or_a_blocked_cloud_is_not_unchanged(store: ReleaseStore) -> None:
    _record(store, MODEL_A)
    assert not plan_release(store, (*CLOUDS, "azure"), _render(MODEL_A)).unchanged
    assert not plan_release(store, CLOUDS, _render(MODEL_A), blocked=["gcp"]).unchanged


def test_objects_recorded_under_another_number_still_count_as_unchanged(store: ReleaseStore) -> None:
    # A rollback records the manifests of the release it went back to, which carry that older number.
    first = _record(store, MODEL_A)
    old = {c: _render(MODEL_A)(c, first) for c in CLOUDS}
    number = store.begin(kind="rollback", model_digest=MODEL_A, clouds=_plans(MODEL_A, old), rollback_of=first)
    for cloud in CLOUDS:
        store.update_cloud(number, cloud, status="deployed")
    store.finish(number)
    plan = plan_release(store, CLOUDS, _render(MODEL_A))
    assert plan.unchanged and plan.number == number
    assert same_objects(plan.objects["aws"], _render(MODEL_A)("aws", None))


def test_the_writer_records_once_and_refuses_a_number_that_moved(store: ReleaseStore) -> None:
    first = _record(store, MODEL_A)
    count = len(store.list())
    assert _record(store, MODEL_A) == first and len(store.list()) == count  # unchanged: nothing written
    plan = plan_release(store, CLOUDS, _render(MODEL_B))
    store.begin(kind="deploy", model_digest=MODEL_B, clouds=_plans(MODEL_B, plan.objects))  # another deploy ran
    with pytest.raises(ReleaseError, match=f"release {plan.number} was planned"):
        record_applied(store, planned=plan.number, model_digest=MODEL_B, clouds=_plans(MODEL_B, plan.objects),
                       bundle_ref=None, created_by="test", detail="test")
