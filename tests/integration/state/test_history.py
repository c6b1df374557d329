"""The replicated history and the lease, in one process, against the three real emulators."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from orchestrator.config import MCOConfig
from orchestrator.errors import LeaseLost, LockHeld, StateUnavailable
from orchestrator.releases.state.objectstore import ObjectBackend, ObjectHistory
from orchestrator.releases.store import CloudPlan
from tests.integration.storage.conftest import Emulators

PLAN = CloudPlan(model_digest="a" * 64, image_ref="img@sha256:" + "b" * 64, image_digest="sha256:" + "b" * 64,
                 overlay="kind", replicas=2, manifests=[{"kind": "Deployment", "metadata": {"name": "m"}}])


def deploy_once(backend: ObjectBackend, *, clouds: tuple[str, ...] = ("aws", "gcp")) -> int:
    history = ObjectHistory(backend)
    with backend.lock(purpose="deploy"):
        history.recover_interrupted()
        number = history.begin(kind="deploy", model_digest="a" * 64, clouds=dict.fromkeys(clouds, PLAN))
        for c in clouds:
            history.update_cloud(number, c, status="applying")
            history.update_cloud(number, c, status="deployed", ready_replicas=2)
        history.finish(number)
    return number


def summaries(cfg: MCOConfig) -> list[dict[str, object]]:
    backend = ObjectBackend(cfg)
    try:
        return [r.summary(manifests=True) for r in ObjectHistory(backend).list()]
    finally:
        backend.close()


def test_two_working_directories_see_one_history(project: Callable[..., MCOConfig]) -> None:
    a, b = project(workdir="a"), project(workdir="b")
    assert a.project.state_dir != b.project.state_dir
    backend = ObjectBackend(a)
    try:
        assert deploy_once(backend) == 1
    finally:
        backend.close()
    other = ObjectBackend(b)
    try:
        assert deploy_once(other) == 2  # numbered after what the first directory wrote
    finally:
        other.close()
    assert summaries(a) == summaries(b)
    assert [r["status"] for r in summaries(a)] == ["deployed", "deployed"]
    assert summaries(a)[0]["clouds"]["aws"]["manifests"] == PLAN.manifests


def test_a_second_lock_is_refused_naming_the_holder(project: Callable[..., MCOConfig]) -> None:
    first, second = ObjectBackend(project(workdir="a")), ObjectBackend(project(workdir="b"))
    try:
        with first.lock(purpose="deploy"):
            with pytest.raises(LockHeld, match=r"another deploy .* is running"):
                second.lock(purpose="rollback").acquire()
            info = second.lock_info()
            assert info["held"] and info["holder"]["purpose"] == "deploy" and info["holder"]["until"]
        assert not second.lock_info()["held"]
        with second.lock():  # free again
            pass
    finally:
        first.close()
        second.close()


def test_wait_queues_behind_the_holder(project: Callable[..., MCOConfig]) -> None:
    import threading

    first, second = ObjectBackend(project(workdir="a")), ObjectBackend(project(workdir="b"))
    lock = first.lock()
    lock.acquire()
    threading.Timer(1.0, lock.release).start()
    started = time.monotonic()
    try:
        with second.lock(wait_s=20):
            assert 0.8 < time.monotonic() - started < 15
    finally:
        first.close()
        second.close()


def test_a_lease_not_renewed_expires_and_the_old_holder_is_fenced(project: Callable[..., MCOConfig]) -> None:
    ttl = 2.0
    old, new = ObjectBackend(project(ttl=ttl, workdir="a")), ObjectBackend(project(ttl=ttl, workdir="b"))
    try:
        stale = old.lock()
        stale.acquire()
        stale._stop.set()  # as if the process were paused: no renewals any more
        with new.lock(wait_s=ttl + 5):
            deploy_number = ObjectHistory(new).begin(kind="deploy", model_digest="c" * 64, clouds={"aws": PLAN})
        with pytest.raises(LeaseLost):
            ObjectHistory(old).begin(kind="deploy", model_digest="d" * 64, clouds={"aws": PLAN})
        # Even a write that skipped the holder's own check is not part of the history: its fence is old.
        view = old.read_log()
        record, _ = old.replicas.append(view, fence=stale.fence_number, type="finish", at="x", by="stale",
                                        data={"number": deploy_number})
        assert old.folded().fenced == [record.seq]
        assert ObjectHistory(new).get(deploy_number).finished_at is None
    finally:
        old.close()
        new.close()


def test_one_store_down_writes_commit_and_verify_repairs(project: Callable[..., MCOConfig],
                                                           all_up: Emulators) -> None:
    cfg = project()
    backend = ObjectBackend(cfg)
    try:
        deploy_once(backend)
        all_up.kill("azure")
        deploy_once(backend)
        assert backend.lagging == {"azure"}
        assert [r.number for r in ObjectHistory(backend).list()] == [2, 1]
        all_up.restart("azure")
        report = backend.verify()
        azure = next(s for s in report["stores"] if s["store"] == "azure")
        assert azure["missing"] and not report["in_sync"]
        repaired = backend.verify(repair=True)
        assert repaired["in_sync"], repaired
    finally:
        backend.close()


def test_two_stores_down_history_reads_stale_and_deploy_is_refused(project: Callable[..., MCOConfig],
                                                                  all_up: Emulators) -> None:
    cfg = project()
    backend = ObjectBackend(cfg)
    try:
        deploy_once(backend)
        all_up.kill("gcp")
        all_up.kill("azure")
        history = ObjectHistory(backend)
        assert [r.number for r in history.list()] == [1]
        assert history.state()["possibly_stale"] and history.state()["unreachable"] == ["azure", "gcp"]
        with pytest.raises(StateUnavailable, match=r"azure.*gcp|gcp.*azure") as err:
            backend.lock().acquire()
        assert sorted(err.value.unreachable) == ["azure", "gcp"]
    finally:
        backend.close()


def test_a_record_edited_by_hand_is_named_and_never_used(project: Callable[..., MCOConfig]) -> None:
    cfg = project()
    backend = ObjectBackend(cfg)
    try:
        deploy_once(backend)
        gcp = backend.replicas.stores["gcp"]
        key = backend.replicas.log_key(2)
        got = gcp.read(key)
        assert got is not None
        gcp.replace(key, got.data.replace(b'"deploy"', b'"rollback"'), version=got.version)  # checksum now wrong
        azure = backend.replicas.stores["azure"]
        got = azure.read(key)
        assert got is not None
        azure.replace(key, b"{not json", version=got.version)
        # The one good copy plus no unreachable store is not a majority: the history stops before it,
        # and never uses either edited copy.
        assert ObjectHistory(backend).list() == []
        report = backend.verify()
        corrupt = {s["store"]: s["corrupt"] for s in report["stores"]}
        assert "checksum mismatch" in corrupt["gcp"][0]["reason"] and "not JSON" in corrupt["azure"][0]["reason"]
    finally:
        backend.close()


def test_one_corrupt_copy_is_outvoted_and_repaired(project: Callable[..., MCOConfig]) -> None:
    cfg = project()
    backend = ObjectBackend(cfg)
    try:
        deploy_once(backend)
        aws = backend.replicas.stores["aws"]
        key = backend.replicas.log_key(3)
        got = aws.read(key)
        assert got is not None
        aws.replace(key, b"garbage", version=got.version)
        assert ObjectHistory(backend).get(1).status == "deployed"
        assert backend.verify()["stores"][0]["corrupt"][0]["record"] == 3
        assert backend.verify(repair=True)["in_sync"]
    finally:
        backend.close()
