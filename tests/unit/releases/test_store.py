"""Release history in SQLite: numbering, per-cloud status, current/previous, crash recovery."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from orchestrator.errors import ReleaseError
from orchestrator.releases.store import CloudPlan, ReleaseStore, current_user, open_store, state_dir_for

MANIFESTS = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mco"}}]


def _plan(model: str = "a" * 64, image: str = "sha256:" + "1" * 64, **kw: object) -> CloudPlan:
    base: dict[str, object] = {"model_digest": model, "image_ref": image, "image_digest": "sha256:" + "9" * 64,
                               "overlay": "kind", "replicas": 2, "manifests": MANIFESTS}
    base.update(kw)
    return CloudPlan(**base)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> ReleaseStore:
    s = ReleaseStore(tmp_path / "state" / "releases.db", "digits")
    yield s
    s.close()


def _deploy(store: ReleaseStore, model: str, clouds: dict[str, str]) -> int:
    number = store.begin(kind="deploy", model_digest=model, clouds={c: _plan(model) for c in clouds})
    for cloud, status in clouds.items():
        store.update_cloud(number, cloud, status=status)
    store.finish(number)
    return number


def test_a_release_records_everything_a_rollback_needs(store: ReleaseStore) -> None:
    number = store.begin(kind="deploy", model_digest="a" * 64, bundle_ref="digits@sha256:" + "a" * 64,
                         gate_forced=True, gate_summary="gate failed: macro_f1 is 0.5", clouds={"aws": _plan(), "gcp": _plan()})
    assert number == 1
    rel = store.get(1)
    assert rel.status == "in_progress" and rel.gate_forced and rel.created_by == current_user()
    assert set(rel.clouds) == {"aws", "gcp"}
    assert rel.clouds["aws"].manifests == MANIFESTS
    assert rel.clouds["aws"].status == "pending"
    store.update_cloud(1, "aws", status="deployed", ready_replicas=2, endpoint="http://127.0.0.1:9001")
    assert store.get(1).status == "in_progress"
    store.update_cloud(1, "gcp", status="failed", reason="CrashLoopBackOff", detail="refusing to start")
    rel = store.finish(1)
    assert rel.status == "partial" and rel.finished_at is not None
    summary = rel.summary()
    assert summary["clouds"]["aws"] == {"status": "deployed", "model_digest": "a" * 64, "image_digest": "sha256:" + "9" * 64,
                                        "image_ref": "sha256:" + "1" * 64, "ready_replicas": 2,
                                        "endpoint": "http://127.0.0.1:9001"}
    assert summary["clouds"]["gcp"]["reason"] == "CrashLoopBackOff"
    assert "manifests" in rel.summary(manifests=True)["clouds"]["aws"]


@pytest.mark.parametrize("statuses,overall", [
    (["deployed", "deployed"], "deployed"), (["deployed", "rolled_back"], "partial"),
    (["rolled_back", "rolled_back"], "rolled_back"), (["failed", "rolled_back"], "failed"),
    (["failed", "interrupted"], "interrupted"), (["deployed", "applying"], "in_progress"),
])
def test_overall_status_follows_the_clouds(store: ReleaseStore, statuses: list[str], overall: str) -> None:
    number = store.begin(kind="deploy", model_digest="a" * 64, clouds={"aws": _plan(), "gcp": _plan()})
    store.update_cloud(number, "aws", status=statuses[0])
    store.update_cloud(number, "gcp", status=statuses[1])
    assert store.get(number).status == overall


def test_current_is_the_latest_deployed_release_per_cloud(store: ReleaseStore) -> None:
    _deploy(store, "a" * 64, {"aws": "deployed", "gcp": "deployed"})
    _deploy(store, "b" * 64, {"aws": "deployed", "gcp": "rolled_back"})
    assert store.current("aws").release == 2
    assert store.current("gcp").release == 1  # gcp went back to release 1
    assert store.previous("aws", before=2).release == 1
    assert store.previous("aws", before=1) is None
    assert store.current("azure") is None
    assert store.current_cloud_values("aws") == {"release": 2, "model_digest": "b" * 64,
                                                 "image_ref": "sha256:" + "1" * 64, "replicas": 2}
    assert [r.number for r in store.list()] == [2, 1]
    assert [r.number for r in store.list(limit=1)] == [2]


def test_rollback_records_point_back(store: ReleaseStore) -> None:
    _deploy(store, "a" * 64, {"aws": "deployed"})
    number = store.begin(kind="rollback", model_digest="a" * 64, rollback_of=1,
                         clouds={"aws": _plan(source_release=1)})
    rel = store.get(number)
    assert rel.kind == "rollback" and rel.rollback_of == 1 and rel.clouds["aws"].source_release == 1


def test_unknown_release_and_cloud_are_clear_errors(store: ReleaseStore) -> None:
    with pytest.raises(ReleaseError, match="no release 4 of digits") as info:
        store.get(4)
    assert "deploy one first" in str(info.value)
    _deploy(store, "a" * 64, {"aws": "deployed"})
    with pytest.raises(ReleaseError, match="has no cloud 'gcp'"):
        store.update_cloud(1, "gcp", status="deployed")
    with pytest.raises(ValueError):
        store.update_cloud(1, "aws", model_digest="x")


def test_a_deploy_that_died_is_marked_interrupted(store: ReleaseStore) -> None:
    number = store.begin(kind="deploy", model_digest="a" * 64, clouds={"aws": _plan(), "gcp": _plan()})
    store.update_cloud(number, "aws", status="deployed")
    store.update_cloud(number, "gcp", status="applying")
    assert store.recover_interrupted() == [number]
    rel = store.get(number)
    assert rel.clouds["gcp"].status == "interrupted" and rel.clouds["aws"].status == "deployed"
    assert rel.status == "partial" and rel.finished_at
    assert store.recover_interrupted() == []


def test_numbers_stay_unique_under_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "releases.db"
    ReleaseStore(path, "digits").close()
    numbers: list[int] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with ReleaseStore(path, "digits") as s:
                for _ in range(10):
                    numbers.append(s.begin(kind="deploy", model_digest="a" * 64, clouds={"aws": _plan()}))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(numbers) == list(range(1, 41))


def test_a_failed_write_leaves_no_half_release(store: ReleaseStore) -> None:
    bad = _plan(manifests=[{"not": object()}])  # not JSON-serialisable: fails inside the transaction
    with pytest.raises(TypeError):
        store.begin(kind="deploy", model_digest="a" * 64, clouds={"aws": _plan(), "gcp": bad})
    assert store.list() == []
    db = sqlite3.connect(store.path)
    assert db.execute("SELECT COUNT(*) FROM release_clouds").fetchone()[0] == 0


def test_services_have_separate_histories(tmp_path: Path) -> None:
    with ReleaseStore(tmp_path / "r.db", "one") as a, ReleaseStore(tmp_path / "r.db", "two") as b:
        _deploy(a, "a" * 64, {"aws": "deployed"})
        assert b.list() == [] and b.current("aws") is None
        assert _deploy(b, "b" * 64, {"aws": "deployed"}) == 1


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "releases.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ReleaseError, match="cannot open release history"):
        ReleaseStore(path, "digits")


def test_state_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    from orchestrator.config import load_config

    cfg_file = tmp_path / "proj" / "mco.yaml"
    cfg_file.parent.mkdir()
    cfg_file.write_text("project: {name: digits, state_dir: state}\n")
    cfg = load_config(cfg_file)
    assert state_dir_for(cfg) == (tmp_path / "proj" / "state").resolve()
    assert open_store(cfg, create=False) is None
    with open_store(cfg) as s:
        assert s.path == (tmp_path / "proj" / "state" / "releases.db").resolve()
