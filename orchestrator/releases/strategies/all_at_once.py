"""``all-at-once``: every cloud in parallel (``releases.deployer.deploy_release``), unchanged."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.releases.strategies import DeployJob, Strategy, register_strategy

if TYPE_CHECKING:
    from orchestrator.releases.deployer import DeployResult

__all__ = ["AllAtOnce"]


@register_strategy
class AllAtOnce(Strategy):
    name = "all-at-once"
    summary = "every cloud in parallel; a cloud whose rollout fails goes back alone"

    def run(self, job: DeployJob) -> DeployResult:
        from orchestrator.releases.deployer import _quiet, deploy_release

        return deploy_release(job.store, job.lock, job.targets, model_digest=job.model_digest, settings=job.settings,
                              bundle_ref=job.bundle_ref, gate_forced=job.gate_forced, gate_summary=job.gate_summary,
                              failed_before_apply=job.failed_before_apply, progress=job.progress or _quiet)
