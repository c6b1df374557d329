"""``waves``: cloud by cloud, each wave judged on live traffic before the next (filled in below)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.releases.strategies import DeployJob, Strategy, register_strategy

if TYPE_CHECKING:
    from orchestrator.releases.deployer import DeployResult

__all__ = ["Waves"]


@register_strategy
class Waves(Strategy):
    name = "waves"
    summary = "cloud by cloud; each wave's traffic grows in steps and is judged on live metrics"

    def run(self, job: DeployJob) -> DeployResult:
        from orchestrator.errors import CapabilityError

        raise CapabilityError("the waves strategy is not built yet")
