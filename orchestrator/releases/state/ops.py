"""``mco state``: who holds the lock, breaking it, checking the replicas, migrating the history.

The CLI (cli/state.py) only parses and draws; these functions return plain data.
"""

from __future__ import annotations

from typing import Any

from orchestrator.config import MCOConfig
from orchestrator.errors import ConfigError, ReleaseError

__all__ = ["force_unlock", "lock_info", "migrate", "verify"]


def _objectstore(cfg: MCOConfig, what: str) -> Any:
    if cfg.state.backend != "objectstore":
        raise ConfigError(f"`mco state {what}` works on the objectstore backend; this project uses sqlite",
                          hint="set state.backend: objectstore (after `mco state migrate --to objectstore`)")
    from orchestrator.releases.state.objectstore import ObjectBackend

    return ObjectBackend(cfg)


def lock_info(cfg: MCOConfig) -> dict[str, Any]:
    if cfg.state.backend == "objectstore":
        backend = _objectstore(cfg, "lock")
        try:
            return dict(backend.lock_info())
        finally:
            backend.close()
    from orchestrator.releases.state import SqliteBackend

    return SqliteBackend(cfg).lock_info()


def force_unlock(cfg: MCOConfig) -> dict[str, Any]:
    backend = _objectstore(cfg, "unlock --force")
    try:
        return dict(backend.force_unlock())
    finally:
        backend.close()


def verify(cfg: MCOConfig, *, repair: bool = False) -> dict[str, Any]:
    backend = _objectstore(cfg, "verify")
    try:
        return dict(backend.verify(repair=repair))
    finally:
        backend.close()


def migrate(cfg: MCOConfig, *, to: str = "objectstore") -> dict[str, Any]:
    """Copy every release (rendered manifests included) from the SQLite history to the stores,
    then compare the two release by release and check the replicas agree."""
    from orchestrator.releases.state.objectstore import ObjectBackend, ObjectHistory
    from orchestrator.releases.store import open_store, state_dir_for

    if to != "objectstore":
        raise ConfigError(f"cannot migrate to '{to}'", hint="the one target is objectstore")
    source = open_store(cfg, create=False)
    if source is None:
        raise ReleaseError(f"there is no SQLite history to migrate in {state_dir_for(cfg)}",
                           hint="run from the project whose history it is (project.state_dir)")
    backend = ObjectBackend(cfg)
    try:
        with source:
            releases = sorted(source.list(), key=lambda r: r.number)
            target = ObjectHistory(backend)
            with backend.lock(purpose="migrate"):
                existing = target.latest_number()
                if existing:
                    raise ReleaseError(
                        f"the objectstore history of '{cfg.project.name}' already has {existing} release(s); "
                        "migrate copies into an empty one",
                        hint="check state.stores and project.name, or keep using the objectstore history")
                for release in releases:
                    target.import_release(release)
            copied = {r.number: r.summary(manifests=True) for r in ObjectHistory(backend).list()}
            differences = [n for n in (r.number for r in releases) if copied.get(n) != source.get(n).summary(manifests=True)]
        check = backend.verify()
        return {"service": cfg.project.name, "copied": len(releases), "equal": not differences,
                "differences": differences, "replicas_in_sync": check["in_sync"], "stores": check["stores"],
                "next": "set state.backend: objectstore in the config"}
    finally:
        backend.close()
