"""The waves strategy's ``CloudOps`` on the local runtime: a wave's clouds switch model
server (``LocalRuntime.rollout``: the new one must be ready before it takes the port), and
a rollback switches back to the previous bundle the same way."""

from __future__ import annotations

from typing import Any

from orchestrator.local.runtime import LocalRuntime
from orchestrator.model.bundle import Bundle

__all__ = ["LocalWaveOps"]


class LocalWaveOps:
    def __init__(self, rt: LocalRuntime, new: Bundle, previous: Bundle, *, release: str = "new",
                 previous_release: str = "old") -> None:
        self.rt = rt
        self.new, self.old = new, previous
        self.release = release
        self.model_digest: str | None = new.digest
        self.previous_release = previous_release
        self.records: list[dict[str, Any]] = []
        self.skipped: dict[str, str] = {}
        self.rolled_back: dict[str, str] = {}

    def _switch(self, clouds: list[str], bundle: Bundle) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for cloud in clouds:
            res = self.rt.rollout(cloud, bundle)
            out[cloud] = None if res.ok else res.reason or "rollout failed"
        return out

    def deploy(self, clouds: list[str]) -> dict[str, str | None]:
        return self._switch(clouds, self.new)

    def rollback(self, clouds: list[str], reason: str) -> dict[str, str | None]:
        for cloud in clouds:
            self.rolled_back[cloud] = reason
        return self._switch([c for c in clouds if self.rt.target(c).digest != self.old.digest], self.old)

    def previous(self, cloud: str) -> str:
        return self.previous_release

    def skip(self, clouds: list[str], reason: str) -> None:
        self.skipped.update(dict.fromkeys(clouds, reason))

    def record(self, doc: dict[str, Any]) -> None:
        import json

        self.records.append(json.loads(json.dumps(doc)))  # a copy, as the store would keep it
