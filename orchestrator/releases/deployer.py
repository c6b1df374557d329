"""Deploy a release to every cloud's cluster at once, watch it, record it, and roll it back.

    deploy_release(...)    render -> server-side dry-run -> apply -> watch, per cloud in parallel;
                           a cloud whose rollout fails goes back to its previous release
                           (``auto_rollback``); the others are left alone.
    rollback_release(...)  re-apply the recorded manifests of an earlier release: no rebuild,
                           no push; recorded as a new release that points back.
    plan_diff(...)         what ``--dry-run`` prints: live objects against a server-side dry-run.

Both writers hold the service's deploy lock (a ``StateLock``) and write every state change to
the history (a ``History``, releases/state/) as it happens, so the history stays consistent when a cluster dies
mid-deploy (that cloud is recorded ``failed`` with the cause) or when mco itself dies
(the next deploy marks the leftovers ``interrupted``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from orchestrator.config import ClusterConfig
from orchestrator.errors import ClusterError, ClusterUnreachable, MCOError, ReleaseError, RolloutFailed
from orchestrator.kube.render import (
    ANNOTATION_MODEL_DIGEST,
    ANNOTATION_RELEASE,
    FetchSource,
    ReleaseValues,
    Resources,
    render_release,
    sort_for_apply,
)
from orchestrator.kube.rollout import (
    RolloutStatus,
    new_replicaset_hash,
    stale_pull_failures,
    wait_for_endpoint,
    wait_for_rollout,
)
from orchestrator.kube.router import RouterValues, render_router
from orchestrator.releases.plan import ReleasePlan, begin_release, plan_release
from orchestrator.releases.state.base import History, StateLock
from orchestrator.releases.store import ROUTER_DEPLOYMENT, CloudPlan, CloudRelease, Release

__all__ = [
    "CloudTarget",
    "DeployResult",
    "DeploySettings",
    "KubeTarget",
    "ProgressFn",
    "deploy_release",
    "plan_diff",
    "rollback_release",
]

Obj = dict[str, Any]
ProgressFn = Callable[[str, str], None]  # (cloud, message)


def _quiet(cloud: str, message: str) -> None:
    pass


@dataclass(frozen=True)
class CloudTarget:
    """One cloud's cluster, and for a deploy the image its manifests reference."""

    cloud: str
    cluster: ClusterConfig
    overlay: str
    image_ref: str | None = None      # REPO@sha256:... or sha256:<image id> (kind)
    image_digest: str | None = None   # what the release records (registry digest, else image id)
    # the router next to the model (kube/router.py); its image digest is recorded with the
    # manifests, so a rollback restores the router with the model
    router: RouterValues | None = None


@dataclass(frozen=True)
class DeploySettings:
    replicas: int = 2
    auto_rollback: bool = True
    rollout_timeout_s: float = 300.0
    readiness_grace_s: float = 60.0
    serving_timeout_s: float = 60.0  # after the rollout: until the configured endpoint serves it (0: don't wait)
    poll_s: float = 0.5
    lock_wait_s: float = 0.0
    # mco owns these objects; taking over a field someone changed by hand is the point of a deploy.
    force_conflicts: bool = True
    run_as_user: int | None = None
    resources: Resources | None = None  # config deploy.resources; None keeps the overlay's
    fetch_sources: dict[str, FetchSource] = field(default_factory=dict)  # per cloud, model_source: fetch


@dataclass
class DeployResult:
    release: Release
    unchanged: bool = False
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"release": self.release.number, "kind": self.release.kind,
                               "status": self.release.status, "model_digest": self.release.model_digest}
        if self.release.rollback_of is not None:
            out["rollback_of"] = self.release.rollback_of
        if self.unchanged:
            out["unchanged"] = True
        out["clouds"] = {name: _cloud_summary(c) for name, c in self.release.clouds.items()}
        if self.release.analysis is not None:  # a waves deploy: each wave, step and measured value
            out["waves"] = self.release.analysis
        if self.notes:
            out["notes"] = self.notes
        return out


def _cloud_summary(cloud: CloudRelease) -> dict[str, Any]:
    out: dict[str, Any] = {"status": cloud.status, "image_digest": cloud.image_digest,
                           "ready_replicas": cloud.ready_replicas, "endpoint": cloud.endpoint,
                           "model_digest": cloud.model_digest}
    if cloud.router_image:
        out["router_image"] = cloud.router_image
    for key in ("reason", "detail", "rolled_back_to", "source_release"):
        value = getattr(cloud, key)
        if value is not None:
            out[key] = value
    return out


# ---------------------------------------------------------------- one cluster


def _deployment_of(objs: list[Obj]) -> Obj:
    for obj in objs:
        if obj["kind"] == "Deployment":
            return obj
    raise ReleaseError("the rendered objects hold no Deployment", hint="keep the Deployment in manifests/base")


def _service_of(objs: list[Obj]) -> Obj | None:
    return next((o for o in objs if o["kind"] == "Service"), None)


def _selector(dep: Obj) -> str:
    labels = dep["spec"]["selector"].get("matchLabels", {})
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


class KubeTarget:
    """Apply, diff and watch one release's objects on one cluster."""

    def __init__(self, cloud: str, cluster: ClusterConfig, *, client: Any = None) -> None:
        from orchestrator.kube.client import KubeClient

        self.cloud = cloud
        self.cluster = cluster
        self.client = client or KubeClient.for_cluster(cluster, name=f"{cloud} ({cluster.context})")
        # The model's pods that existed before the last apply: an earlier try's, not this rollout's.
        self._earlier_pods: set[str] = set()
        self._replaced: set[str] = set()

    def close(self) -> None:
        self.client.close()

    def _namespace_exists(self, objs: list[Obj]) -> bool:
        ns = next((o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"), None)
        return ns is None or self.client.get("v1", "Namespace", ns) is not None

    def dry_run(self, objs: list[Obj], *, force: bool, with_live: bool = True) -> list[tuple[Obj, Obj | None, Obj | None]]:
        """Server-side dry-run of every object: ``(planned, live, result)``.

        When the namespace does not exist yet, the server cannot dry-run what goes into it;
        those objects come back with ``result`` None (they are new, and the real apply creates
        the namespace first).
        """
        ns_ok = self._namespace_exists(objs)
        out: list[tuple[Obj, Obj | None, Obj | None]] = []
        for obj in objs:
            meta = obj["metadata"]
            namespaced = obj["kind"] != "Namespace"
            if namespaced and not ns_ok:
                out.append((obj, None, None))
                continue
            # The live object is only needed for a diff; a deploy's dry-run just asks the server to validate.
            live = self.client.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace")) \
                if with_live else None
            result = self.client.apply(obj, force=force, dry_run=True)
            out.append((obj, live, result))
        return out

    def check_secrets(self, objs: list[Obj]) -> None:
        """Every Secret a Deployment's containers take their whole environment from (``envFrom``,
        not optional) exists in its namespace: a fetch-mode pod's store credentials
        (``cluster.fetch_credentials_secret``). Without it the pods would wait in
        CreateContainerConfigError, so the cloud fails here, before anything is applied. An
        identity that may not read Secrets skips the check (the rollout still names the wait)."""
        for dep in (o for o in objs if o["kind"] == "Deployment"):
            namespace = dep["metadata"]["namespace"]
            for container in dep["spec"]["template"]["spec"]["containers"]:
                for ref in container.get("envFrom") or []:
                    secret = ref.get("secretRef") or {}
                    if not secret.get("name") or secret.get("optional"):
                        continue
                    if self.client.exists("v1", "Secret", secret["name"], namespace) is False:
                        raise ClusterError(
                            f"{self.cloud}: the Secret '{secret['name']}' that the model pods take their store "
                            f"credentials from is not in namespace '{namespace}'; nothing was applied",
                            hint=f"create it first (`kubectl --context {self.cluster.context} -n {namespace} create "
                                 f"secret generic {secret['name']} --from-env-file=FILE`, with the variables the "
                                 "store's SDK reads, e.g. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or unset "
                                 f"clouds.{self.cloud}.cluster.fetch_credentials_secret to use the pods' cloud identity")

    def apply(self, objs: list[Obj], *, force: bool) -> None:
        dep = next((o for o in objs if o["kind"] == "Deployment"), None)
        if dep is not None:
            self._earlier_pods = {str(p["metadata"].get("uid")) for p in
                                  self.client.list("v1", "Pod", dep["metadata"]["namespace"],
                                                   label_selector=_selector(dep))}
        for obj in objs:
            self.client.apply(obj, force=force, dry_run=False)

    def _pods_of(self, dep: Obj) -> list[Obj]:
        """The pods of this rollout: the current ReplicaSet's, less an earlier try's pods that
        could not get the image then. Those are replaced: the image has been staged since, and
        their kubelet would only retry after its back-off."""
        namespace = dep["metadata"]["namespace"]
        selector = _selector(dep)
        rs_hash = new_replicaset_hash(dep, self.client.list("apps/v1", "ReplicaSet", namespace, label_selector=selector))
        if rs_hash is None:
            return []
        pods = self.client.list("v1", "Pod", namespace, label_selector=f"{selector},pod-template-hash={rs_hash}")
        stale = stale_pull_failures(pods, self._earlier_pods)
        for pod in stale:
            uid = str(pod["metadata"].get("uid"))
            if uid not in self._replaced:
                self._replaced.add(uid)
                try:
                    self.client.delete("v1", "Pod", pod["metadata"]["name"], namespace)
                except MCOError:  # not allowed to delete: it is still not judged; its kubelet retries
                    pass
        stale_uids = {str(p["metadata"].get("uid")) for p in stale}
        return [p for p in pods if str(p["metadata"].get("uid")) not in stale_uids]

    def _controller_manager_pods(self) -> list[Obj]:
        try:
            return self.client.list("v1", "Pod", "kube-system", label_selector="component=kube-controller-manager")
        except MCOError:  # not allowed to look (managed clusters): the generic hint stands
            return []

    def watch(self, objs: list[Obj], settings: DeploySettings, progress: ProgressFn,
              cancelled: threading.Event | None = None) -> RolloutStatus:
        dep = _deployment_of(objs)
        name, namespace = dep["metadata"]["name"], dep["metadata"]["namespace"]

        def fetch() -> Obj | None:
            if cancelled is not None and cancelled.is_set():
                raise RolloutFailed("mco stopped waiting for this cloud", reason="Timeout")
            return self.client.get("apps/v1", "Deployment", name, namespace)

        state = wait_for_rollout(
            fetch, self._pods_of, fetch_controller_pods=self._controller_manager_pods,
            timeout_s=settings.rollout_timeout_s, poll_s=settings.poll_s,
            readiness_grace_s=settings.readiness_grace_s,
            on_progress=lambda st: progress(self.cloud, f"rolling out: {st.progress_line()}"),
        )
        router = next((o for o in objs if o["kind"] == "Deployment"
                       and o["metadata"]["name"] == ROUTER_DEPLOYMENT), None)
        if router is not None:  # router.in_cluster: the release is done when its routers are ready too
            rname = router["metadata"]["name"]

            def fetch_router() -> Obj | None:
                if cancelled is not None and cancelled.is_set():
                    raise RolloutFailed("mco stopped waiting for this cloud", reason="Timeout")
                return self.client.get("apps/v1", "Deployment", rname, namespace)

            wait_for_rollout(
                fetch_router, self._pods_of, fetch_controller_pods=self._controller_manager_pods,
                timeout_s=settings.rollout_timeout_s, poll_s=settings.poll_s,
                readiness_grace_s=settings.readiness_grace_s,
                on_progress=lambda st: progress(self.cloud, f"routers rolling out: {st.progress_line()}"),
            )
        digest = (dep["metadata"].get("annotations") or {}).get(ANNOTATION_MODEL_DIGEST)
        if self.cluster.endpoint and digest and settings.serving_timeout_s > 0:
            # Only an endpoint the config names: it is where clients come in, and reachable from here.
            progress(self.cloud, f"waiting for {self.cluster.endpoint} to serve the release")
            wait_for_endpoint(str(self.cluster.endpoint), digest, timeout_s=settings.serving_timeout_s,
                              cancelled=lambda: cancelled is not None and cancelled.is_set())
        return state

    def endpoint(self, objs: list[Obj]) -> str | None:
        """The configured endpoint, else the load balancer's address once it has one."""
        if self.cluster.endpoint:
            return str(self.cluster.endpoint)
        svc = _service_of(objs)
        if svc is None:
            return None
        live = self.client.get("v1", "Service", svc["metadata"]["name"], svc["metadata"]["namespace"])
        ingress = ((live or {}).get("status", {}).get("loadBalancer", {}) or {}).get("ingress") or []
        if not ingress:
            return None
        host = ingress[0].get("hostname") or ingress[0].get("ip")
        port = (svc["spec"].get("ports") or [{}])[0].get("port", 80)
        return f"http://{host}" + ("" if port == 80 else f":{port}")

    def live_summary(self, namespace: str, name: str) -> dict[str, Any]:
        """What runs now, read from the cluster (for ``mco status``)."""
        dep = self.client.get("apps/v1", "Deployment", name, namespace)
        if dep is None:
            return {"deployed": False}
        annotations = dep["metadata"].get("annotations") or {}
        container = dep["spec"]["template"]["spec"]["containers"][0]
        status = dep.get("status") or {}
        return {"deployed": True, "image": container.get("image"),
                "model_digest": annotations.get("mco.dev/model-digest"),
                "release_annotation": annotations.get(ANNOTATION_RELEASE),
                "replicas": dep["spec"].get("replicas"), "ready_replicas": status.get("readyReplicas", 0) or 0}


# ---------------------------------------------------------------- dry-run diff


def plan_diff(targets: list[CloudTarget], model_digest: str, settings: DeploySettings, *,
              release: int | None = None, manifests_dir: Path | str | None = None,
              target_factory: Callable[[CloudTarget], KubeTarget] | None = None) -> dict[str, dict[str, Any]]:
    """Per cloud: the unified diff between live objects and a server-side dry-run apply."""
    from orchestrator.kube.client import diff_objects

    factory = target_factory or (lambda t: KubeTarget(t.cloud, t.cluster))

    def one(target: CloudTarget) -> dict[str, Any]:
        objs = _render(target, model_digest, settings, release, manifests_dir)
        kube = factory(target)
        try:
            results = kube.dry_run(objs, force=settings.force_conflicts)
        except MCOError as exc:
            return {"error": exc.message}
        finally:
            kube.close()
        diffs, changed = [], 0
        for planned, live, result in results:
            label = f"{planned['kind']}/{planned['metadata']['name']}"
            text = diff_objects(live, result if result is not None else planned, label=label)
            if text:
                changed += 1
                diffs.append(text)
        return {"changed_objects": changed, "objects": len(objs), "diff": "".join(diffs)}

    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        futures = {t.cloud: pool.submit(one, t) for t in targets}
        return {cloud: fut.result() for cloud, fut in futures.items()}


# ---------------------------------------------------------------- deploy / rollback


def _render(target: CloudTarget, model_digest: str, settings: DeploySettings, release: int | None,
            manifests_dir: Path | str | None) -> list[Obj]:
    if target.image_ref is None:
        raise ReleaseError(f"no image for {target.cloud}", hint="package and push the bundle first")
    values = ReleaseValues(
        image=target.image_ref, model_digest=model_digest, replicas=settings.replicas,
        namespace=target.cluster.namespace, node_port=target.cluster.node_port, cloud=target.cloud,
        release=release, run_as_user=settings.run_as_user, resources=settings.resources,
        fetch=settings.fetch_sources.get(target.cloud),
        ingress_cidrs=tuple(target.cluster.ingress_cidrs) if target.cluster.ingress_cidrs is not None else None,
        load_balancer_source_ranges=tuple(target.cluster.load_balancer_source_ranges),
    )
    objs = render_release(target.overlay, values, manifests_dir=manifests_dir)
    if target.router is not None:
        objs = sort_for_apply(objs + render_router(objs, target.router))
    return objs


class _Run:
    """The per-cloud workers of one release, writing their progress to the store."""

    def __init__(self, store: History, number: int, settings: DeploySettings, progress: ProgressFn,
                 target_factory: Callable[[CloudTarget], KubeTarget]) -> None:
        self.store = store
        self.number = number
        self.settings = settings
        self.progress = progress
        self.factory = target_factory
        self.cancelled: dict[str, threading.Event] = {}
        self._write = threading.Lock()

    def record(self, cloud: str, **fields: Any) -> None:
        # After mco gave up on a cloud (overall timeout), a late answer must not overwrite the verdict.
        with self._write:
            if self.cancelled.get(cloud, threading.Event()).is_set():
                return
            self.store.update_cloud(self.number, cloud, **fields)

    def roll_out(self, target: CloudTarget, objs: list[Obj], *, fallback: CloudRelease | None) -> None:
        cloud = target.cloud
        self.record(cloud, status="applying")
        kube: KubeTarget | None = None
        stage = "connect"
        try:
            kube = self.factory(target)
            stage = "preflight"
            kube.check_secrets(objs)
            stage = "dry-run"
            self.progress(cloud, "server-side dry-run")
            kube.dry_run(objs, force=self.settings.force_conflicts, with_live=False)
            stage = "apply"
            self.progress(cloud, f"applying {len(objs)} objects")
            kube.apply(objs, force=self.settings.force_conflicts)
            stage = "rollout"
            state = kube.watch(objs, self.settings, self.progress, self.cancelled.get(cloud))
            endpoint = kube.endpoint(objs)
            self.record(cloud, status="deployed", ready_replicas=state.ready, endpoint=endpoint)
            self.progress(cloud, f"deployed: {state.ready}/{state.replicas} ready")
        except RolloutFailed as exc:
            self.progress(cloud, f"failed: {exc.reason}")
            self._fail(target, kube, reason=exc.reason, detail=exc.message, fallback=fallback)
        except MCOError as exc:
            unreachable = stage == "connect" or isinstance(exc, ClusterUnreachable)
            reason = "ClusterUnreachable" if unreachable else f"{stage.replace('-', ' ').title().replace(' ', '')}Failed"
            self.progress(cloud, f"failed: {reason}")
            # The cluster refused or vanished: a rollback would meet the same cluster; say so instead.
            self.record(cloud, status="failed", reason=reason, detail=exc.message)
        except Exception as exc:  # a bug or library surprise must still leave a consistent record
            self.progress(cloud, f"failed: {type(exc).__name__}")
            self.record(cloud, status="failed", reason="Error", detail=f"{type(exc).__name__}: {exc}")
        finally:
            if kube is not None:
                kube.close()

    def _fail(self, target: CloudTarget, kube: KubeTarget | None, *, reason: str, detail: str,
              fallback: CloudRelease | None) -> None:
        cloud = target.cloud
        if fallback is None or kube is None:
            why = "automatic rollback is off" if not self.settings.auto_rollback else \
                "there is no earlier release on this cloud to go back to"
            self.record(cloud, status="failed", reason=reason, detail=f"{detail} ({why})")
            return
        self.progress(cloud, f"rolling back to release {fallback.release}")
        try:
            kube.apply(fallback.manifests, force=self.settings.force_conflicts)
            state = kube.watch(fallback.manifests, self.settings, self.progress, self.cancelled.get(cloud))
        except MCOError as exc:
            self.record(cloud, status="failed", reason=reason,
                        detail=f"{detail}; automatic rollback to release {fallback.release} failed too: {exc.message}")
            self.progress(cloud, f"failed: {reason}; rollback failed")
            return
        self.record(cloud, status="rolled_back", reason=reason, detail=detail, rolled_back_to=fallback.release,
                    ready_replicas=state.ready, endpoint=kube.endpoint(fallback.manifests))
        self.progress(cloud, f"rolled back to release {fallback.release} ({reason})")

    def run_all(self, jobs: dict[str, Callable[[], None]], overall_timeout_s: float) -> None:
        for cloud in jobs:
            self.cancelled[cloud] = threading.Event()
        pool = ThreadPoolExecutor(max_workers=max(1, len(jobs)), thread_name_prefix="mco-deploy")
        futures = {cloud: pool.submit(job) for cloud, job in jobs.items()}
        deadline = time.monotonic() + overall_timeout_s
        for cloud, fut in futures.items():
            try:
                fut.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                with self._write:
                    self.store.update_cloud(self.number, cloud, status="failed", reason="Timeout",
                                            detail=f"no answer from the cluster within {overall_timeout_s:.0f} s")
                    self.cancelled[cloud].set()
                self.progress(cloud, "failed: Timeout")
        # Do not wait for a hung worker: its cloud is already recorded as failed.
        pool.shutdown(wait=False, cancel_futures=True)


def _overall_timeout(settings: DeploySettings) -> float:
    # a rollout, a possible automatic rollback, and the API calls around them
    return settings.rollout_timeout_s * 2 + 120.0


def _default_factory(target: CloudTarget) -> KubeTarget:
    return KubeTarget(target.cloud, target.cluster)


def deploy_release(
    store: History,
    lock: StateLock,
    targets: list[CloudTarget],
    *,
    model_digest: str,
    settings: DeploySettings,
    bundle_ref: str | None = None,
    gate_forced: bool = False,
    gate_summary: str | None = None,
    manifests_dir: Path | str | None = None,
    progress: ProgressFn = _quiet,
    target_factory: Callable[[CloudTarget], KubeTarget] = _default_factory,
    failed_before_apply: dict[str, tuple[str, str]] | None = None,
) -> DeployResult:
    """Render, apply and watch ``targets`` in parallel under ``lock``; return the recorded release.

    ``failed_before_apply`` names clouds that could not be prepared (``{cloud: (reason,
    detail)}``, e.g. the image could not be loaded): they are recorded as failed, untouched.

    When every cloud already runs exactly these objects (``orchestrator.releases.plan``), no
    new release is recorded: the recorded objects are re-applied (a server-side apply that
    changes nothing when the cluster still has them) and watched, and the current release is
    returned with ``unchanged``.
    """
    if not targets:
        raise ReleaseError("no cloud to deploy to", hint="configure clouds.<name>.cluster, or check --clouds")
    model_digest = model_digest.removeprefix("sha256:")
    by_cloud = {t.cloud: t for t in targets}
    failed_before_apply = failed_before_apply or {}
    with lock:
        store.recover_interrupted()
        plan = plan_release(store, by_cloud,
                            lambda cloud, n: _render(by_cloud[cloud], model_digest, settings, n, manifests_dir),
                            blocked=failed_before_apply)
        if plan.unchanged:
            return _reapply_unchanged(store, targets, plan, settings, progress, target_factory)
        fallbacks = {c: (cur if settings.auto_rollback else None) for c, cur in plan.current.items()}
        rendered = plan.objects
        plans = {t.cloud: CloudPlan(model_digest=model_digest, image_ref=str(t.image_ref), image_digest=t.image_digest,
                                    overlay=t.overlay, replicas=settings.replicas, manifests=rendered[t.cloud],
                                    endpoint=t.cluster.endpoint)
                 for t in targets}
        number = begin_release(store, planned=plan.number, kind="deploy", model_digest=model_digest,
                               bundle_ref=bundle_ref, gate_forced=gate_forced, gate_summary=gate_summary, clouds=plans)
        run = _Run(store, number, settings, progress, target_factory)
        for cloud, (reason, detail) in failed_before_apply.items():
            run.record(cloud, status="failed", reason=reason, detail=detail)
        run.run_all({t.cloud: partial(run.roll_out, t, rendered[t.cloud], fallback=fallbacks[t.cloud])
                     for t in targets if t.cloud not in failed_before_apply}, _overall_timeout(settings))
        return DeployResult(store.finish(number))


def _reapply_unchanged(store: History, targets: list[CloudTarget], plan: ReleasePlan,
                       settings: DeploySettings, progress: ProgressFn,
                       target_factory: Callable[[CloudTarget], KubeTarget]) -> DeployResult:
    """Re-apply what the history says runs (repairs drift, or a cluster made anew) and watch
    it become ready; record nothing new."""
    errors: dict[str, str] = {}

    def one(target: CloudTarget) -> None:
        objs = plan.objects[target.cloud]
        kube = target_factory(target)
        try:
            progress(target.cloud, "unchanged: re-applying")
            kube.check_secrets(objs)
            kube.apply(objs, force=settings.force_conflicts)
            state = kube.watch(objs, settings, progress)
            progress(target.cloud, f"unchanged: {state.ready}/{state.replicas} ready")
        except MCOError as exc:
            errors[target.cloud] = exc.message
            progress(target.cloud, "failed")
        finally:
            kube.close()

    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        list(pool.map(one, targets))
    if errors:
        raise ClusterError("the clouds already run this release, but re-applying it failed: "
                           + "; ".join(f"{c}: {m}" for c, m in sorted(errors.items())),
                           hint="check those clusters, then deploy again")
    release = store.get(plan.number)
    # Show what runs on each target cloud (they may be on different releases of the same objects).
    clouds = {t.cloud: plan.current[t.cloud] for t in targets}
    shown = Release(**{**release.__dict__, "clouds": {c: v for c, v in clouds.items() if v is not None}})
    return DeployResult(shown, unchanged=True, notes=["every cloud already runs these objects; no new release"])


def rollback_release(
    store: History,
    lock: StateLock,
    clusters: dict[str, tuple[ClusterConfig, str]],
    *,
    to: int | None,
    settings: DeploySettings,
    progress: ProgressFn = _quiet,
    target_factory: Callable[[CloudTarget], KubeTarget] = _default_factory,
) -> DeployResult:
    """Re-apply recorded manifests: of release ``to``, or per cloud of the release before its current one.

    ``clusters`` maps cloud -> (ClusterConfig, overlay). Records a ``rollback`` release
    pointing back at its source. No image is built or pushed.
    """
    if not clusters:
        raise ReleaseError("no cloud to roll back", hint="check --clouds and the clouds' cluster config")
    with lock:
        store.recover_interrupted()
        sources: dict[str, CloudRelease] = {}
        if to is not None:
            target_release = store.get(to)
            for cloud in clusters:
                rec = target_release.clouds.get(cloud)
                if rec is None:
                    raise ReleaseError(f"release {to} was not deployed to {cloud}",
                                       hint=f"release {to} covers: {', '.join(target_release.clouds) or 'no cloud'}; "
                                            "pass --clouds to choose")
                sources[cloud] = rec
        else:
            for cloud in clusters:
                cur = store.current(cloud)
                if cur is None:
                    raise ReleaseError(f"{cloud} has no deployed release to roll back from",
                                       hint="deploy first, or pass --clouds without it")
                prev = store.previous(cloud, before=cur.release)
                if prev is None:
                    raise ReleaseError(f"{cloud} runs release {cur.release}, and there is no earlier deployed release",
                                       hint="pass --to N to choose one from `mco history`")
                sources[cloud] = prev
        digests = {s.model_digest for s in sources.values()}
        source_numbers = {s.release for s in sources.values()}
        plans = {cloud: CloudPlan(model_digest=src.model_digest, image_ref=src.image_ref, image_digest=src.image_digest,
                                  overlay=src.overlay, replicas=src.replicas, manifests=src.manifests,
                                  endpoint=clusters[cloud][0].endpoint, source_release=src.release)
                 for cloud, src in sources.items()}
        number = begin_release(store, planned=None, kind="rollback",
                               model_digest=digests.pop() if len(digests) == 1 else "mixed",
                               rollback_of=to if to is not None else (min(source_numbers) if len(source_numbers) == 1
                                                                      else None),
                               clouds=plans)
        # A rollback that fails is not rolled back again: the cloud is reported failed with its reason.
        no_auto = DeploySettings(**{**settings.__dict__, "auto_rollback": False})
        run = _Run(store, number, no_auto, progress, target_factory)
        jobs: dict[str, Callable[[], None]] = {}
        for cloud, src in sources.items():
            cluster, overlay = clusters[cloud]
            target = CloudTarget(cloud, cluster, overlay, image_ref=src.image_ref, image_digest=src.image_digest)
            jobs[cloud] = partial(run.roll_out, target, src.manifests, fallback=None)
        run.run_all(jobs, _overall_timeout(settings))
        return DeployResult(store.finish(number))
