"""Rollout readiness and failure naming, on Deployment and Pod objects shaped as the API returns them."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest

from orchestrator.errors import RolloutFailed
from orchestrator.kube.rollout import (
    controller_manager_trouble,
    deployment_progress,
    diagnose_pods,
    new_replicaset_hash,
    stale_pull_failures,
    wait_for_rollout,
)

NOW = 1_700_000_000.0


def _dep(*, replicas: int = 2, generation: int = 2, observed: int = 2, updated: int = 2, ready: int = 2,
         available: int = 2, total: int | None = None, conditions: list[dict] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "mco-model", "namespace": "mco", "generation": generation, "uid": "u1",
                     "annotations": {"deployment.kubernetes.io/revision": "3"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "m"}}},
        "status": {"observedGeneration": observed, "updatedReplicas": updated, "readyReplicas": ready,
                   "availableReplicas": available, "replicas": total if total is not None else updated,
                   "conditions": conditions or []},
    }


def _iso(ts: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _pod(**container: Any) -> dict[str, Any]:
    return {"metadata": {"name": "mco-model-abc"}, "status": {"containerStatuses": [{"name": "model", **container}]}}


def test_rolled_out_only_when_every_count_matches_and_the_controller_caught_up() -> None:
    assert deployment_progress(_dep()).done
    assert not deployment_progress(_dep(observed=1)).done  # controller has not seen generation 2
    assert "controller" in deployment_progress(_dep(observed=1)).message
    assert not deployment_progress(_dep(updated=1)).done
    assert not deployment_progress(_dep(ready=1)).done
    assert not deployment_progress(_dep(available=1)).done
    assert not deployment_progress(_dep(total=3)).done  # an old pod is still there
    assert "old replicas" in deployment_progress(_dep(total=3)).message


def test_progress_line_counts() -> None:
    assert deployment_progress(_dep(ready=1, available=1)).progress_line() == "1/2 ready, 2 updated, 1 available"


def test_new_replicaset_is_the_one_of_the_current_revision() -> None:
    dep = _dep()
    rs = [{"metadata": {"ownerReferences": [{"uid": "u1"}], "labels": {"pod-template-hash": h},
                        "annotations": {"deployment.kubernetes.io/revision": r}}} for h, r in (("old", "2"), ("new", "3"))]
    foreign = {"metadata": {"ownerReferences": [{"uid": "other"}], "labels": {"pod-template-hash": "x"},
                            "annotations": {"deployment.kubernetes.io/revision": "3"}}}
    assert new_replicaset_hash(dep, [foreign, *rs]) == "new"
    assert new_replicaset_hash(dep, rs[:1]) is None


@pytest.mark.parametrize("waiting", ["ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull"])
def test_image_problems_are_named_imagepullbackoff(waiting: str) -> None:
    pods = [_pod(state={"waiting": {"reason": waiting, "message": "image not present"}}, restartCount=0)]
    reason, detail = diagnose_pods(pods, now=NOW)
    assert reason == "ImagePullBackOff" and waiting in detail


def test_crashloop_carries_the_servers_last_words() -> None:
    pods = [_pod(state={"waiting": {"reason": "CrashLoopBackOff"}}, restartCount=3,
                 lastState={"terminated": {"exitCode": 3, "message": "mco model server: refusing to start: tampered"}})]
    reason, detail = diagnose_pods(pods, now=NOW)
    assert reason == "CrashLoopBackOff"
    assert "code 3" in detail and "refusing to start: tampered" in detail


def test_repeated_exits_count_as_crashloop_before_the_backoff_state_shows() -> None:
    pods = [_pod(state={"running": {"startedAt": _iso(NOW - 1)}}, restartCount=2, ready=False,
                 lastState={"terminated": {"exitCode": 1}})]
    assert diagnose_pods(pods, now=NOW)[0] == "CrashLoopBackOff"
    one_restart = [_pod(state={"running": {"startedAt": _iso(NOW - 1)}}, restartCount=1, ready=False,
                        lastState={"terminated": {"exitCode": 1}})]
    assert diagnose_pods(one_restart, now=NOW) is None


def test_readiness_failing_only_after_the_grace_period() -> None:
    young = [_pod(state={"running": {"startedAt": _iso(NOW - 10)}}, ready=False, restartCount=0)]
    old = [_pod(state={"running": {"startedAt": _iso(NOW - 90)}}, ready=False, restartCount=0)]
    assert diagnose_pods(young, now=NOW, readiness_grace_s=60) is None
    reason, detail = diagnose_pods(old, now=NOW, readiness_grace_s=60)
    assert reason == "ReadinessFailing" and "/readyz" in detail


def test_healthy_and_starting_pods_are_not_failures() -> None:
    pods = [_pod(state={"running": {"startedAt": _iso(NOW - 500)}}, ready=True, restartCount=0),
            _pod(state={"waiting": {"reason": "ContainerCreating"}}, restartCount=0)]
    assert diagnose_pods(pods, now=NOW) is None


class _Sequence:
    """Deployment states a cluster reports one poll after another (the cluster's answers, replayed)."""

    def __init__(self, states: list[dict], pods: list[dict] | None = None) -> None:
        self.states = states
        self.pods = pods or []
        self.calls = 0

    def deployment(self) -> dict:
        state = self.states[min(self.calls, len(self.states) - 1)]
        self.calls += 1
        return state

    def pods_of(self, dep: dict) -> list[dict]:
        return self.pods


def test_wait_returns_when_done_and_reports_each_change() -> None:
    seq = _Sequence([_dep(observed=1), _dep(ready=0, available=0), _dep(ready=1, available=1), _dep()])
    seen: list[str] = []
    state = wait_for_rollout(seq.deployment, seq.pods_of, poll_s=0, sleep=lambda s: None,
                             on_progress=lambda st: seen.append(st.message))
    assert state.done and seq.calls == 4 and len(seen) == 4


def test_wait_names_the_progress_deadline() -> None:
    cond = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": 'ReplicaSet "mco-model-abc" has timed out progressing.'}]
    seq = _Sequence([_dep(ready=0, available=0, conditions=cond)])
    with pytest.raises(RolloutFailed) as info:
        wait_for_rollout(seq.deployment, seq.pods_of, poll_s=0, sleep=lambda s: None)
    assert info.value.reason == "ProgressDeadlineExceeded" and "timed out progressing" in info.value.message


def test_wait_names_a_crashloop() -> None:
    pods = [_pod(state={"waiting": {"reason": "CrashLoopBackOff"}}, restartCount=2, lastState={"terminated": {"exitCode": 3}})]
    seq = _Sequence([_dep(ready=0, available=0)], pods)
    with pytest.raises(RolloutFailed) as info:
        wait_for_rollout(seq.deployment, seq.pods_of, poll_s=0, sleep=lambda s: None)
    assert info.value.reason == "CrashLoopBackOff" and info.value.hint


def test_wait_gives_up_at_its_timeout() -> None:
    ticks = iter(range(1000))
    seq = _Sequence([_dep(ready=0, available=0)])
    with pytest.raises(RolloutFailed) as info:
        wait_for_rollout(seq.deployment, seq.pods_of, timeout_s=5, poll_s=1, clock=lambda: float(next(ticks)),
                         sleep=lambda s: None)
    assert info.value.reason == "Timeout" and "0/2 replicas available" in info.value.message


def test_a_vanished_deployment_is_a_failure() -> None:
    with pytest.raises(RolloutFailed, match="disappeared"):
        wait_for_rollout(lambda: None, lambda d: [], poll_s=0, sleep=lambda s: None)


def test_old_failures_are_not_judged_before_the_controller_sees_the_new_spec() -> None:
    """Right after a rollback is applied, the pods of the newest ReplicaSet are still the crashing ones."""
    crashing = [_pod(state={"waiting": {"reason": "CrashLoopBackOff"}}, restartCount=3, lastState={"terminated": {"exitCode": 3}})]
    seq = _Sequence([_dep(generation=3, observed=2, ready=0, available=0), _dep(generation=3, observed=3)], crashing)
    state = wait_for_rollout(seq.deployment, seq.pods_of, poll_s=0, sleep=lambda s: None)
    assert state.done and seq.calls == 2


def test_a_spec_the_controller_never_sees_names_a_crashing_controller_manager() -> None:
    stale = _dep(generation=4, observed=3)
    manager = _pod(ready=False, restartCount=6, state={"waiting": {"reason": "CrashLoopBackOff"}},
                   lastState={"terminated": {"exitCode": 1, "message": "leaderelection lost\n"}})
    ticks = iter(range(100))
    with pytest.raises(RolloutFailed) as info:
        wait_for_rollout(lambda: stale, lambda d: [], fetch_controller_pods=lambda: [manager], timeout_s=3,
                         poll_s=1, clock=lambda: float(next(ticks)), sleep=lambda s: None)
    assert info.value.reason == "Timeout"
    assert "waiting for the controller to see the new spec" in info.value.message
    assert "controller-manager pod mco-model-abc is not ready (CrashLoopBackOff), 6 restarts, last exit code 1: " \
           "leaderelection lost" in info.value.message
    assert "kube-system" in (info.value.hint or "")


def test_a_healthy_or_invisible_controller_manager_adds_nothing() -> None:
    assert controller_manager_trouble([]) is None
    assert controller_manager_trouble([_pod(ready=True, restartCount=2)]) is None


def test_only_an_earlier_tries_pods_waiting_for_an_image_are_stale() -> None:
    never = {"state": {"waiting": {"reason": "ErrImageNeverPull"}}}
    old_waiting = {**_pod(**never), "metadata": {"name": "old", "uid": "u-old"}}
    old_running = {**_pod(state={"running": {}}, ready=True), "metadata": {"name": "ok", "uid": "u-ok"}}
    new_waiting = {**_pod(**never), "metadata": {"name": "new", "uid": "u-new"}}
    pods = [old_waiting, old_running, new_waiting]
    assert stale_pull_failures(pods, {"u-old", "u-ok"}) == [old_waiting]
    assert stale_pull_failures(pods, set()) == []  # a pod of this rollout is judged, not excused
