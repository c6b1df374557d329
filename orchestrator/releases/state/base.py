"""What the release pipeline needs from a state backend: a history and a deploy lock.

    History     the releases of one service: begin, update a cloud, finish, mark interrupted;
                get, list, current, previous. ``ReleaseStore`` (SQLite) and
                ``ObjectHistory`` (replicated over object stores) both satisfy it.
    StateLock   one deploy (or rollback) of a service at a time: ``with lock: ...``, or
                ``LockHeld`` naming the holder. ``DeployLock`` (flock) and ``Lease`` (a lease
                with a fencing number on a majority of stores) both satisfy it.

Protocols, checked by mypy: the implementations share no base class and no code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator

    from orchestrator.releases.store import CloudPlan, CloudRelease, Release

__all__ = ["History", "StateLock"]


class History(Protocol):
    def begin(self, *, kind: str, model_digest: str, clouds: dict[str, CloudPlan], bundle_ref: str | None = None,
              gate_forced: bool = False, gate_summary: str | None = None, rollback_of: int | None = None,
              created_by: str | None = None) -> int: ...

    def update_cloud(self, number: int, cloud: str, **fields: Any) -> None: ...

    def set_analysis(self, number: int, doc: dict[str, Any]) -> None: ...

    def finish(self, number: int) -> Release: ...

    def recover_interrupted(self) -> list[int]: ...

    def get(self, number: int) -> Release: ...

    def latest_number(self) -> int: ...

    def list(self, *, limit: int | None = None) -> list[Release]: ...

    def current(self, cloud: str) -> CloudRelease | None: ...

    def previous(self, cloud: str, *, before: int) -> CloudRelease | None: ...

    def current_cloud_values(self, cloud: str) -> dict[str, Any] | None: ...

    def iter_clouds(self) -> Iterator[str]: ...

    def close(self) -> None: ...

    def __enter__(self) -> History: ...

    def __exit__(self, *exc: Any) -> None: ...


class StateLock(Protocol):
    def acquire(self) -> None: ...

    def release(self) -> None: ...

    @property
    def held(self) -> bool: ...

    def __enter__(self) -> StateLock: ...

    def __exit__(self, *exc: Any) -> None: ...
