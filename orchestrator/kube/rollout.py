"""Is a Deployment serving its new release yet, and if it cannot, why not?

Readiness lives here and nowhere else: a Deployment is rolled out when
``status.observedGeneration`` has caught up with ``metadata.generation`` and
``updatedReplicas``, ``readyReplicas`` and ``availableReplicas`` all equal ``spec.replicas``
(and no old pods are left over).

A rollout that cannot finish fails with a named reason, read from the new ReplicaSet's pods
and the Deployment's conditions:

    ImagePullBackOff            the image cannot be pulled (also ErrImagePull, ErrImageNeverPull, InvalidImageName)
    CrashLoopBackOff            the server keeps exiting (the container's last words are in the detail)
    ReadinessFailing            the server runs but /readyz has not passed for ``readiness_grace_s``
    ProgressDeadlineExceeded    the Deployment's own progress deadline passed
    Timeout                     mco stopped waiting (``timeout_s``)
    Unschedulable               no node can take the pod (CreateContainerConfigError etc. are named as such)
    EndpointNotServing          the pods are ready, but the cluster's configured endpoint (where clients
                                come in) did not answer with the new model (``wait_for_endpoint``)

A rolled-out Deployment is not yet what clients get: kube-proxy and load balancers learn of
new and departing pods a moment later. Where the cluster has a configured endpoint, a cloud
is deployed only once that endpoint answers ``/readyz`` with the release's model digest
several times in a row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.errors import RolloutFailed

__all__ = [
    "RolloutStatus",
    "controller_manager_trouble",
    "deployment_progress",
    "diagnose_pods",
    "new_replicaset_hash",
    "stale_pull_failures",
    "wait_for_endpoint",
    "wait_for_rollout",
]

Obj = dict[str, Any]

_PULL_REASONS = {"ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName", "RegistryUnavailable"}
_CONFIG_REASONS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


@dataclass(frozen=True)
class RolloutStatus:
    done: bool
    replicas: int
    updated: int
    ready: int
    available: int
    message: str

    def progress_line(self) -> str:
        return f"{self.ready}/{self.replicas} ready, {self.updated} updated, {self.available} available"


def deployment_progress(dep: Obj) -> RolloutStatus:
    """Pure: the rollout state of a Deployment object (as the API returns it)."""
    spec = dep.get("spec", {})
    status = dep.get("status", {}) or {}
    want = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    generation = int(dep.get("metadata", {}).get("generation", 0) or 0)
    observed = int(status.get("observedGeneration", 0) or 0)
    updated = int(status.get("updatedReplicas", 0) or 0)
    ready = int(status.get("readyReplicas", 0) or 0)
    available = int(status.get("availableReplicas", 0) or 0)
    total = int(status.get("replicas", 0) or 0)
    if observed < generation:
        return RolloutStatus(False, want, updated, ready, available, "waiting for the controller to see the new spec")
    done = updated == want and ready == want and available == want and total == want
    if done:
        message = f"{want}/{want} replicas ready"
    elif updated < want:
        message = f"{updated}/{want} replicas updated"
    elif total > updated:
        message = f"{total - updated} old replicas terminating"
    else:
        message = f"{available}/{want} replicas available"
    return RolloutStatus(done, want, updated, ready, available, message)


def _condition(dep: Obj, kind: str) -> Obj | None:
    for cond in (dep.get("status", {}) or {}).get("conditions", []) or []:
        if cond.get("type") == kind:
            return cond
    return None


def new_replicaset_hash(dep: Obj, replicasets: list[Obj]) -> str | None:
    """The ``pod-template-hash`` of the ReplicaSet for the Deployment's current revision."""
    revision = (dep.get("metadata", {}).get("annotations") or {}).get("deployment.kubernetes.io/revision")
    uid = dep.get("metadata", {}).get("uid")
    for rs in replicasets:
        owners = rs.get("metadata", {}).get("ownerReferences") or []
        if uid and not any(o.get("uid") == uid for o in owners):
            continue
        if revision and (rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision") == revision:
            return (rs["metadata"].get("labels") or {}).get("pod-template-hash")
    return None


def stale_pull_failures(pods: list[Obj], earlier: set[str]) -> list[Obj]:
    """Pure: the pods among ``pods`` that existed before this rollout (their uid is in
    ``earlier``) and are waiting for an image they could not get then.

    Such a pod tells nothing about this rollout: the image is staged before each apply, and
    the pod's kubelet only looks again after its back-off. Judging it would fail a release
    for the previous try's missing image."""
    out = []
    for pod in pods:
        if str(pod.get("metadata", {}).get("uid")) not in earlier:
            continue
        for cs in (pod.get("status", {}) or {}).get("containerStatuses", []) or []:
            if ((cs.get("state") or {}).get("waiting") or {}).get("reason") in _PULL_REASONS:
                out.append(pod)
                break
    return out


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _last_exit(container_status: Obj) -> tuple[int | None, str]:
    """The container's last exit code and the last line of its last words (what it printed to
    its termination log), from ``lastState.terminated``."""
    last = (container_status.get("lastState") or {}).get("terminated") or {}
    words = (last.get("message") or "").strip()
    return last.get("exitCode"), words.splitlines()[-1][:400] if words else ""


def diagnose_pods(pods: list[Obj], *, now: float | None = None, readiness_grace_s: float = 60.0,
                  crash_restarts: int = 2) -> tuple[str, str] | None:
    """Pure: ``(reason, detail)`` when the new pods show a failure that will not fix itself."""
    now = time.time() if now is None else now
    for pod in pods:
        name = pod.get("metadata", {}).get("name", "?")
        status = pod.get("status", {}) or {}
        for cond in status.get("conditions", []) or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
                started = _parse_time(cond.get("lastTransitionTime"))
                if started is not None and now - started > readiness_grace_s:
                    return "Unschedulable", f"pod {name}: {cond.get('message', 'no node fits')}"
        for cs in status.get("containerStatuses", []) or []:
            state = cs.get("state", {}) or {}
            waiting = state.get("waiting") or {}
            reason = waiting.get("reason")
            last = (cs.get("lastState", {}) or {}).get("terminated") or {}
            if reason in _PULL_REASONS:
                return "ImagePullBackOff", f"pod {name}: {reason}: {waiting.get('message', cs.get('image', ''))}".strip()
            if reason in _CONFIG_REASONS:
                return reason, f"pod {name}: {waiting.get('message', '')}".strip()
            restarts = int(cs.get("restartCount", 0) or 0)
            if reason == "CrashLoopBackOff" or (last and restarts >= crash_restarts and not cs.get("ready")):
                exit_code, words = _last_exit(cs)
                detail = f"pod {name}: container '{cs.get('name')}' exited"
                if exit_code is not None:
                    detail += f" with code {exit_code}"
                detail += f" ({restarts} restarts)"
                if words:
                    detail += f": {words}"
                return "CrashLoopBackOff", detail
            running = state.get("running") or {}
            if running and not cs.get("ready"):
                started = _parse_time(running.get("startedAt"))
                if started is not None and now - started > readiness_grace_s:
                    return "ReadinessFailing", (f"pod {name}: running for {now - started:.0f} s "
                                                f"but its readiness probe (/readyz) still fails")
    return None


def controller_manager_trouble(pods: list[Obj]) -> str | None:
    """Pure: why the cluster's kube-controller-manager pods (kubeadm's and kind's static pods,
    label ``component=kube-controller-manager``) are not acting on Deployments, or None when
    they look healthy or none is visible (a managed control plane shows none)."""
    for pod in pods:
        name = pod.get("metadata", {}).get("name", "?")
        for cs in (pod.get("status", {}) or {}).get("containerStatuses", []) or []:
            if cs.get("ready"):
                continue
            waiting = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
            exit_code, words = _last_exit(cs)
            detail = f"pod {name} is not ready"
            if waiting:
                detail += f" ({waiting})"
            detail += f", {int(cs.get('restartCount', 0) or 0)} restarts"
            if exit_code is not None:
                detail += f", last exit code {exit_code}"
            if words:
                detail += f": {words}"
            return detail
    return None


def wait_for_rollout(
    fetch_deployment: Callable[[], Obj | None],
    fetch_pods: Callable[[Obj], list[Obj]],
    *,
    fetch_controller_pods: Callable[[], list[Obj]] = list,
    timeout_s: float = 300.0,
    poll_s: float = 1.0,
    readiness_grace_s: float = 60.0,
    on_progress: Callable[[RolloutStatus], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RolloutStatus:
    """Poll until the Deployment is rolled out; raise ``RolloutFailed`` naming the reason.

    ``fetch_pods(deployment)`` returns the pods of the Deployment's newest ReplicaSet
    (see ``KubeRollout`` in ``orchestrator.releases.deployer`` for the API calls);
    ``fetch_controller_pods()`` the controller-manager's pods, read only to explain a
    Deployment the controller never picked up.
    """
    deadline = clock() + timeout_s
    last: RolloutStatus | None = None
    while True:
        dep = fetch_deployment()
        if dep is None:
            raise RolloutFailed("the Deployment disappeared during the rollout", reason="Deleted",
                                hint="something deleted it; deploy again")
        state = deployment_progress(dep)
        if on_progress is not None and state != last:
            on_progress(state)
        last = state
        if state.done:
            return state
        caught_up = int((dep.get("status") or {}).get("observedGeneration", 0) or 0) >= \
            int(dep.get("metadata", {}).get("generation", 0) or 0)
        if not caught_up:
            # Until the controller has seen this spec, its conditions and "newest" pods are the
            # previous revision's: judging them would blame this release for the last one's failure.
            if clock() >= deadline:
                trouble = controller_manager_trouble(fetch_controller_pods())
                message = f"not rolled out after {timeout_s:.0f} s ({state.message})"
                if trouble:
                    message += f"; the cluster's controller-manager {trouble}"
                raise RolloutFailed(message, reason="Timeout",
                                    hint="the cluster's controller-manager is what acts on a new spec: check it "
                                         "(`kubectl -n kube-system get pods`, its logs), or raise "
                                         "deploy.rollout_timeout_s on a slow cluster")
            sleep(poll_s)
            continue
        stalled = _condition(dep, "Progressing")
        if stalled and stalled.get("status") == "False" and stalled.get("reason") == "ProgressDeadlineExceeded":
            failure = diagnose_pods(fetch_pods(dep), readiness_grace_s=0.0)
            detail = stalled.get("message", "")
            if failure:
                detail = f"{detail}; {failure[0]}: {failure[1]}"
            raise RolloutFailed(f"progress deadline exceeded: {detail}", reason="ProgressDeadlineExceeded")
        failure = diagnose_pods(fetch_pods(dep), readiness_grace_s=readiness_grace_s)
        if failure is not None:
            reason, detail = failure
            raise RolloutFailed(f"{reason}: {detail}", reason=reason, hint=_HINTS.get(reason))
        if clock() >= deadline:
            raise RolloutFailed(f"not rolled out after {timeout_s:.0f} s ({state.message})", reason="Timeout",
                                hint="raise deploy.rollout_timeout_s, or look at `kubectl describe deployment`")
        sleep(poll_s)


def wait_for_endpoint(
    endpoint: str,
    model_digest: str,
    *,
    timeout_s: float = 60.0,
    poll_s: float = 0.2,
    in_a_row: int = 3,
    cancelled: Callable[[], bool] = lambda: False,
) -> float:
    """Poll ``endpoint/readyz`` until ``in_a_row`` answers in a row carry ``model_digest``
    (so no old pod still gets traffic); return the seconds it took. Raise ``RolloutFailed``
    (EndpointNotServing) naming the last answer after ``timeout_s``."""
    import httpx

    want = model_digest.removeprefix("sha256:")
    started = time.monotonic()
    streak, last = 0, "no answer yet"
    with httpx.Client(timeout=min(2.0, timeout_s)) as client:
        while True:
            try:
                # A new connection each time: a kept-alive one would stay on one pod.
                resp = client.get(f"{endpoint.rstrip('/')}/readyz", headers={"connection": "close"})
                served = str((resp.json() if resp.status_code == 200 else {}).get("model_digest") or "")
                if resp.status_code == 200 and served.removeprefix("sha256:") == want:
                    streak += 1
                    if streak >= in_a_row:
                        return time.monotonic() - started
                    continue
                last = f"model {served[:12]}" if resp.status_code == 200 else f"HTTP {resp.status_code}"
            except (httpx.HTTPError, ValueError) as exc:
                last = type(exc).__name__
            streak = 0
            if cancelled():
                raise RolloutFailed("mco stopped waiting for this cloud", reason="Timeout")
            if time.monotonic() - started > timeout_s:
                raise RolloutFailed(
                    f"the pods are ready but {endpoint} did not serve model {want[:12]} within {timeout_s:.0f} s "
                    f"(last answer: {last})", reason="EndpointNotServing",
                    hint="check the Service and whatever routes to it (load balancer, port mapping); "
                         "clusters.<cloud>.cluster.endpoint must be where clients reach this cloud")
            time.sleep(poll_s)


_HINTS = {
    "ImagePullBackOff": "the cluster cannot get the image: for kind, was it loaded (`kind load`)? "
                        "for a registry, was it pushed and can the cluster authenticate?",
    "CrashLoopBackOff": "the model server exits at start; its last words are above (a tampered or mismatched model "
                        "is refused on purpose)",
    "ReadinessFailing": "the server runs but never reports ready; check its /readyz and the pod's logs",
    "Unschedulable": "no node has room for the pod; lower the resource requests or add nodes",
}
