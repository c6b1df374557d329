"""Release state backends: where the history and the deploy lock live (``state.backend``).

    sqlite       ``ReleaseStore`` in ``<project.state_dir>/releases.db`` and a ``flock``
                 (``DeployLock``): one machine. The default; ``mco demo`` uses it.
    objectstore  ``ObjectHistory`` and ``Lease`` over the ``state.stores`` clouds' buckets,
                 replicated: a majority commits, a lease with a fencing number locks.

The pipeline asks ``state_backend(cfg)`` for both, so a deploy's history writes carry the
fence of the lease the same backend took.
"""

from __future__ import annotations

from typing import Any, Protocol

from orchestrator.config import MCOConfig
from orchestrator.releases.state.base import History, StateLock

__all__ = ["History", "SqliteBackend", "StateBackend", "StateLock", "open_history", "state_backend"]


class StateBackend(Protocol):
    name: str

    def history(self, *, create: bool = True) -> History | None: ...

    def lock(self, *, wait_s: float = 0.0, purpose: str = "deploy") -> StateLock: ...

    def close(self) -> None: ...


class SqliteBackend:
    name = "sqlite"

    def __init__(self, cfg: MCOConfig) -> None:
        self.cfg = cfg

    def history(self, *, create: bool = True) -> History | None:
        from orchestrator.releases.store import open_store

        return open_store(self.cfg, create=create)

    def lock(self, *, wait_s: float = 0.0, purpose: str = "deploy") -> StateLock:
        from orchestrator.releases.lock import DeployLock
        from orchestrator.releases.store import state_dir_for

        return DeployLock(state_dir_for(self.cfg), self.cfg.project.name, wait_s=wait_s, purpose=purpose)

    def lock_info(self) -> dict[str, Any]:
        """Who holds the lock, asked of the kernel: a holder's note left in a lock nobody holds
        is reported as ``ended_without_release`` (a deploy killed with -9), not as a holder."""
        from orchestrator.releases.lock import DeployLock
        from orchestrator.releases.store import state_dir_for

        held, note = DeployLock(state_dir_for(self.cfg), self.cfg.project.name).probe()

        def who(n: dict[str, Any]) -> dict[str, Any]:
            return {"holder": n.get("by"), "pid": n.get("pid"), "purpose": n.get("purpose"), "since": n.get("since"),
                    "until": None}

        out: dict[str, Any] = {"service": self.cfg.project.name, "backend": "sqlite", "held": held,
                               "holder": who(note) if held and note else None}
        if not held and note:
            out["ended_without_release"] = who(note)
        return out

    def close(self) -> None:
        pass


class _ObjectBackendAdapter:
    name = "objectstore"

    def __init__(self, cfg: MCOConfig) -> None:
        from orchestrator.releases.state.objectstore import ObjectBackend

        self.inner = ObjectBackend(cfg)

    def history(self, *, create: bool = True) -> History | None:
        from orchestrator.releases.state.objectstore import ObjectHistory

        return ObjectHistory(self.inner)

    def lock(self, *, wait_s: float = 0.0, purpose: str = "deploy") -> StateLock:
        return self.inner.lock(wait_s=wait_s, purpose=purpose)

    def close(self) -> None:
        self.inner.close()


def state_backend(cfg: MCOConfig) -> StateBackend:
    if cfg.state.backend == "objectstore":
        return _ObjectBackendAdapter(cfg)
    return SqliteBackend(cfg)


def open_history(cfg: MCOConfig, *, create: bool = True) -> History | None:
    """The project's history, for readers; closing it closes its backend. ``None`` when
    ``create`` is false and a SQLite history does not exist yet."""
    if cfg.state.backend == "objectstore":
        from orchestrator.releases.state.objectstore import ObjectBackend, ObjectHistory

        return ObjectHistory(ObjectBackend(cfg), owns_backend=True)
    from orchestrator.releases.store import open_store

    return open_store(cfg, create=create)
