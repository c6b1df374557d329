"""The waves strategy's ``CloudOps`` on Kubernetes: one release record, cloud rollouts per wave.

The release is recorded at the start with every cloud ``pending``; a wave's clouds are
applied and watched like an all-at-once deploy (``deployer._Run``), rolled back by
re-applying their previous release's recorded manifests, and clouds of waves never
reached are ``skipped``. The waves' record goes to ``release_analysis`` after every step.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from orchestrator.errors import MCOError
from orchestrator.releases.deployer import (
    DeployResult,
    _default_factory,
    _overall_timeout,
    _quiet,
    _render,
    _Run,
)
from orchestrator.releases.plan import begin_release, plan_release
from orchestrator.releases.store import CloudPlan

if TYPE_CHECKING:
    from orchestrator.releases.strategies import DeployJob

__all__ = ["KubeWaveOps"]


class KubeWaveOps:
    def __init__(self, job: DeployJob) -> None:
        self.job = job
        self.store = job.store
        self.by_cloud = {t.cloud: t for t in job.targets}
        settings = job.settings
        digest = job.model_digest.removeprefix("sha256:")
        self.model_digest: str | None = digest
        self.store.recover_interrupted()
        plan = plan_release(self.store, self.by_cloud,
                            lambda cloud, n: _render(self.by_cloud[cloud], digest, settings, n, None))
        self.plan = plan
        self.fallbacks = dict(plan.current)
        if plan.unchanged:
            return
        plans = {t.cloud: CloudPlan(model_digest=digest, image_ref=str(t.image_ref), image_digest=t.image_digest,
                                    overlay=t.overlay, replicas=settings.replicas, manifests=plan.objects[t.cloud],
                                    endpoint=t.cluster.endpoint)
                 for t in job.targets}
        self.number = begin_release(self.store, planned=plan.number, kind="deploy", model_digest=digest,
                                    bundle_ref=job.bundle_ref, gate_forced=job.gate_forced,
                                    gate_summary=job.gate_summary, clouds=plans)
        self.release = str(self.number)
        self.progress = job.progress or _quiet
        self.run = _Run(self.store, self.number, settings, self.progress, _default_factory)

    def _status(self, cloud: str) -> tuple[str, str | None]:
        c = self.store.get(self.number).clouds[cloud]
        return c.status, c.detail or c.reason

    def deploy(self, clouds: list[str]) -> dict[str, str | None]:
        self.run.run_all({c: partial(self.run.roll_out, self.by_cloud[c], self.plan.objects[c],
                                     fallback=self.fallbacks.get(c)) for c in clouds},
                         _overall_timeout(self.job.settings))
        out: dict[str, str | None] = {}
        for c in clouds:
            status, why = self._status(c)
            out[c] = None if status == "deployed" else f"{status}: {why}"
        return out

    def rollback(self, clouds: list[str], reason: str) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for cloud in clouds:
            fallback = self.fallbacks.get(cloud)
            status, _ = self._status(cloud)
            if status != "deployed":  # its rollout already failed (and rolled back by itself)
                out[cloud] = None
                continue
            if fallback is None:
                self.run.record(cloud, status="failed", reason="AnalysisFailed",
                                detail=f"{reason} (no earlier release on this cloud to go back to)")
                out[cloud] = "no earlier release"
                continue
            kube = _default_factory(self.by_cloud[cloud])
            try:
                self.progress(cloud, f"rolling back to release {fallback.release}")
                kube.apply(fallback.manifests, force=self.job.settings.force_conflicts)
                state = kube.watch(fallback.manifests, self.job.settings, self.progress, None)
                self.run.record(cloud, status="rolled_back", reason="AnalysisFailed", detail=reason,
                                rolled_back_to=fallback.release, ready_replicas=state.ready,
                                endpoint=kube.endpoint(fallback.manifests))
                out[cloud] = None
            except MCOError as exc:
                self.run.record(cloud, status="failed", reason="AnalysisFailed",
                                detail=f"{reason}; the rollback to release {fallback.release} failed too: {exc.message}")
                out[cloud] = exc.message
            finally:
                kube.close()
        return out

    def previous(self, cloud: str) -> str:
        fallback = self.fallbacks.get(cloud)
        return str(fallback.release) if fallback is not None else "-"

    def skip(self, clouds: list[str], reason: str) -> None:
        for cloud in clouds:
            self.run.record(cloud, status="skipped", reason="NotStarted", detail=reason)

    def record(self, doc: dict[str, Any]) -> None:
        self.store.set_analysis(self.number, doc)

    def fail_rest(self, why: str) -> None:
        for cloud, c in self.store.get(self.number).clouds.items():
            if c.status in ("pending", "applying"):
                self.run.record(cloud, status="skipped" if c.status == "pending" else "failed",
                                reason="WavesStopped", detail=why)
        self.store.finish(self.number)

    def result(self) -> DeployResult:
        return DeployResult(self.store.finish(self.number))
