"""The ``objectstore`` state backend: the history and the lock in the clouds' buckets.

    ObjectBackend   the service's ``Replicas`` (one ``ConditionalStore`` per ``state.stores``
                    cloud, under ``<prefix>/state/<service>/``), the lease in use, and the
                    operations that are not the pipeline's: lock info, forced unlock, verify
    ObjectHistory   the ``History`` the pipeline writes: every change is one record appended
                    under the lease's fence; every read folds the log (records are cached
                    locally by version, so a read costs one listing per store)

A write made with a store down commits on the majority and names the store in ``lagging``;
the next lease taken, or ``mco state verify --repair``, copies what it lacks.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from orchestrator.config import MCOConfig
from orchestrator.errors import LeaseLost, MCOError, PreconditionFailed, ReleaseError
from orchestrator.releases.state.lease import LEASE, Lease, parse_lease
from orchestrator.releases.state.records import Folded, Record, fold
from orchestrator.releases.state.replicas import LogView, Replicas, StoreReport
from orchestrator.releases.store import (
    CloudPlan,
    CloudRelease,
    Release,
    _now,
    check_cloud_fields,
    current_user,
    render_values,
)

__all__ = ["ObjectBackend", "ObjectHistory", "open_replicas"]

_ATTEMPTS = 8


def open_replicas(cfg: MCOConfig, stores: list[str] | None = None) -> Replicas:
    from orchestrator.providers.loader import providers_for
    from orchestrator.releases.store import state_dir_for

    names = stores or cfg.state_stores()
    providers = providers_for(cfg, names)
    opened = {}
    try:
        for name, provider in providers.items():
            opened[name] = provider.conditional_store()
    except BaseException:
        for store in opened.values():
            store.close()
        raise
    prefixes = {name: providers[name].storage_config().prefix for name in names}
    root = f"state/{cfg.project.name}"
    # Each store keeps the state under its own storage prefix; the conditional store is given
    # the full key, so the prefix goes into Replicas' root only when every store agrees on it.
    if len(set(prefixes.values())) > 1:
        from orchestrator.errors import ConfigError

        raise ConfigError(f"the state stores have different storage prefixes: {prefixes}",
                          hint="give clouds.<name>.storage.prefix the same value for every cloud in state.stores")
    prefix = next(iter(prefixes.values()))
    if prefix:
        root = f"{prefix}/{root}"
    return Replicas(opened, root, cache_dir=state_dir_for(cfg) / "state-cache" / cfg.project.name)


class ObjectBackend:
    def __init__(self, cfg: MCOConfig, replicas: Replicas | None = None) -> None:
        self.cfg = cfg
        self.service = cfg.project.name
        self.replicas = replicas or open_replicas(cfg)
        self.active: Lease | None = None
        self._view: LogView | None = None
        self._folded: Folded | None = None
        self._mutex = threading.RLock()
        self.lagging: set[str] = set()
        self.repaired: dict[str, list[int]] = {}  # records copied to lagging stores on taking the lease

    def close(self) -> None:
        if self.active is not None:
            self.active.release()
        self.replicas.close()

    # ------------------------------------------------------------------ the log

    def read_log(self, *, full: bool = False) -> LogView:
        with self._mutex:
            view = self.replicas.read(full=full)
            self._view, self._folded = view, fold(view.records, self.service)
            return view

    def folded(self, *, fresh: bool = True) -> Folded:
        with self._mutex:
            if fresh or self._folded is None:
                self.read_log()
            assert self._folded is not None
            return self._folded

    def view(self) -> LogView:
        with self._mutex:
            return self._view or self.read_log()

    def append(self, type: str, data: dict[str, Any], *, lease: Lease | None = None,
               fence: int | None = None) -> Record:
        """Commit one record under ``lease`` (default: the lease this process holds)."""
        with self._mutex:
            holder = lease or self.active
            for _ in range(_ATTEMPTS):
                if fence is None:
                    if holder is None:
                        raise LeaseLost(f"no lease is held on '{self.service}': history writes need the deploy lock")
                    number = holder.fence()
                else:
                    number = fence
                view = self._view or self.read_log()
                if view.max_fence > number:
                    if holder is not None:
                        holder.mark_fenced(f"a newer holder (fence {view.max_fence}) took over")
                        holder.fence()  # raises LeaseLost
                    raise LeaseLost(f"fence {number} is older than the history's {view.max_fence}")
                try:
                    record, lagging = self.replicas.append(view, fence=number, type=type, at=_now(),
                                                           by=current_user(), data=data)
                except PreconditionFailed:
                    self.read_log()  # someone else wrote this number: see who, and try after it
                    continue
                self.lagging |= set(lagging)  # every store that missed a write since this backend opened
                records = [*view.records, record]
                self._view = replace(view, records=records)
                self._folded = fold(records, self.service)
                return record
            raise ReleaseError(f"could not append to the history of '{self.service}' after {_ATTEMPTS} attempts: "
                               "other writers kept taking the next record", hint="try again")

    def commit_barrier(self, lease: Lease, type: str, data: dict[str, Any]) -> None:
        """The first record of a new holder: from here on, lower fences are refused. Then mend
        stores that lag behind the chosen log. The lease has just read the log."""
        self.append(type, data, lease=lease)
        view = self.view()
        if any(not r.in_sync for r in view.reports(self.replicas.wheres()) if r.reachable):
            try:
                for name, seqs in self.replicas.repair(view).items():
                    self.repaired.setdefault(name, []).extend(seqs)
            except MCOError:
                pass  # best effort: verify --repair reports and retries

    # ------------------------------------------------------------------ the lock, seen from outside

    def lock(self, *, wait_s: float = 0.0, purpose: str = "deploy", poll_s: float = 0.5) -> Lease:
        return Lease(self, wait_s=wait_s, purpose=purpose, poll_s=poll_s)

    def lock_info(self) -> dict[str, Any]:
        key = self.replicas.key(LEASE)
        reads = self.replicas.each(lambda _n, s: s.read(key))
        per_store: dict[str, Any] = {}
        for name, r in reads.items():
            if isinstance(r, MCOError):
                per_store[name] = {"reachable": False, "error": r.message}
            elif r is None:
                per_store[name] = {"reachable": True, "lease": None}
            else:
                per_store[name] = {"reachable": True, "lease": parse_lease(r.data), "version": r.version}
        leases = [s["lease"] for s in per_store.values() if s.get("lease")]
        by_token: dict[str, list[dict[str, Any]]] = {}
        for lease in leases:
            by_token.setdefault(str(lease.get("token")), []).append(lease)
        holder = None
        if by_token:
            best = max(by_token.values(), key=lambda ls: (len(ls), max(x["fence"] for x in ls)))
            newest = max(best, key=lambda x: str(x.get("renewed", "")))
            holder = {k: newest.get(k) for k in ("holder", "host", "pid", "purpose", "fence", "since", "until",
                                                  "ttl_s", "renewed")}
            holder["stores"] = len(best)
            holder["majority"] = len(best) >= self.replicas.majority
        return {"service": self.service, "backend": "objectstore", "held": holder is not None and holder["majority"],
                "holder": holder, "stores": per_store}

    def force_unlock(self) -> dict[str, Any]:
        """Delete every store's lease and record it, with a fence above the broken holder's."""
        info = self.lock_info()
        key = self.replicas.key(LEASE)
        versions = {n: s["version"] for n, s in info["stores"].items() if s.get("version")}
        self.replicas.each(lambda n, s: s.delete_if(key, version=versions[n]), list(versions))
        view = self.read_log()
        fences = [s["lease"]["fence"] for s in info["stores"].values() if s.get("lease")]
        fence = max([view.max_fence, *fences]) + 1
        record = self.append("unlock", {"broke": info["holder"], "by": current_user()}, fence=fence)
        return {"service": self.service, "broke": info["holder"], "record": record.seq, "fence": fence}

    # ------------------------------------------------------------------ verify

    def verify(self, *, repair: bool = False) -> dict[str, Any]:
        if repair:
            with self.lock(purpose="repair"):
                view = self.read_log(full=True)
                mended = dict(self.repaired)  # what taking the lease already mended
                for name, seqs in self.replicas.repair(view, extra=True).items():
                    mended.setdefault(name, []).extend(seqs)
                view = self.read_log(full=True)
        else:
            view, mended = self.read_log(full=True), {}
        reports: list[StoreReport] = view.reports(self.replicas.wheres())
        return {"service": self.service, "records": len(view.records), "head": view.head[1],
                "majority": self.replicas.majority, "possibly_stale": view.possibly_stale,
                "unreachable": sorted(view.unreachable), "fenced": fold(view.records, self.service).fenced,
                "stores": [r.summary() for r in reports], "repaired": mended,
                "in_sync": all(r.in_sync for r in reports)}


class ObjectHistory:
    """The ``History`` of one service, over an ``ObjectBackend``."""

    def __init__(self, backend: ObjectBackend, *, owns_backend: bool = False) -> None:
        self.backend = backend
        self.service = backend.service
        self._owns = owns_backend

    def close(self) -> None:
        if self._owns:
            self.backend.close()

    def __enter__(self) -> ObjectHistory:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- what readers are told about the replicas

    def state(self) -> dict[str, Any]:
        view = self.backend.view()
        return {"backend": "objectstore", "possibly_stale": view.possibly_stale, "unreachable": sorted(view.unreachable),
                "lagging": sorted(self.backend.lagging)}

    # -- writes

    def begin(self, *, kind: str, model_digest: str, clouds: dict[str, CloudPlan], bundle_ref: str | None = None,
              gate_forced: bool = False, gate_summary: str | None = None, rollback_of: int | None = None,
              created_by: str | None = None) -> int:
        if not clouds:
            raise ReleaseError("a release needs at least one cloud")
        with self.backend._mutex:
            number = max(self.backend.folded(fresh=False).releases, default=0) + 1
            plans = {name: {"model_digest": p.model_digest, "image_digest": p.image_digest, "image_ref": p.image_ref,
                            "overlay": p.overlay, "replicas": p.replicas, "manifests": p.manifests,
                            "endpoint": p.endpoint, "source_release": p.source_release} for name, p in clouds.items()}
            self.backend.append("begin", {
                "number": number, "kind": kind, "model_digest": model_digest, "bundle_ref": bundle_ref,
                "created_by": created_by or current_user(), "created_at": _now(), "gate_forced": gate_forced,
                "gate_summary": gate_summary, "rollback_of": rollback_of, "clouds": plans})
            return number

    def update_cloud(self, number: int, cloud: str, **fields: Any) -> None:
        check_cloud_fields(fields)
        if not fields:
            return
        with self.backend._mutex:
            rel = self.backend.folded(fresh=False).releases.get(number)
            if rel is None or cloud not in rel["clouds"]:
                raise ReleaseError(f"release {number} has no cloud '{cloud}'")
            self.backend.append("cloud", {"number": number, "cloud": cloud, "fields": json.loads(json.dumps(fields))})

    def set_analysis(self, number: int, doc: dict[str, Any]) -> None:
        with self.backend._mutex:
            if number not in self.backend.folded(fresh=False).releases:
                raise ReleaseError(f"there is no release {number}")
            self.backend.append("analysis", {"number": number, "doc": json.loads(json.dumps(doc))})

    def finish(self, number: int) -> Release:
        with self.backend._mutex:
            self.backend.append("finish", {"number": number})
            return self.backend.folded(fresh=False).release(number)

    def recover_interrupted(self) -> list[int]:
        with self.backend._mutex:
            folded = self._folded()
            numbers = sorted(n for n, r in folded.releases.items()
                             if any(c["status"] in ("pending", "applying") for c in r["clouds"].values()))
            if numbers:
                self.backend.append("recover", {"numbers": numbers})
            return numbers

    def import_release(self, release: Release) -> None:
        """Append a whole release as it stands (``mco state migrate``)."""
        data = release.summary(manifests=True)
        clouds = {}
        for name, c in release.clouds.items():
            clouds[name] = {"model_digest": c.model_digest, "image_digest": c.image_digest, "image_ref": c.image_ref,
                            "overlay": c.overlay, "replicas": c.replicas, "manifests": c.manifests, "status": c.status,
                            "reason": c.reason, "detail": c.detail, "ready_replicas": c.ready_replicas,
                            "endpoint": c.endpoint, "source_release": c.source_release,
                            "rolled_back_to": c.rolled_back_to, "updated_at": c.updated_at}
        self.backend.append("import", {"release": {
            "number": release.number, "kind": release.kind, "model_digest": release.model_digest,
            "bundle_ref": release.bundle_ref, "created_by": release.created_by, "created_at": release.created_at,
            "finished_at": release.finished_at, "gate_forced": release.gate_forced,
            "gate_summary": release.gate_summary, "rollback_of": release.rollback_of, "status": data["status"],
            "analysis": release.analysis, "clouds": clouds}})

    # -- reads (each folds the log afresh: another machine may have written)

    def _folded(self) -> Folded:
        # Under the lease, this process is the only writer: what it appended is the log.
        return self.backend.folded(fresh=self.backend.active is None)

    def get(self, number: int) -> Release:
        folded = self._folded()
        if number not in folded.releases:
            latest = max(folded.releases, default=0)
            raise ReleaseError(f"there is no release {number} of {self.service}",
                               hint=f"releases go from 1 to {latest}; see `mco history`" if latest else "deploy one first")
        return folded.release(number)

    def latest_number(self) -> int:
        return max(self._folded().releases, default=0)

    def list(self, *, limit: int | None = None) -> list[Release]:
        folded = self._folded()
        numbers = sorted(folded.releases, reverse=True)[:limit]
        return [folded.release(n) for n in numbers]

    def _deployed(self, cloud: str, before: int | None = None) -> CloudRelease | None:
        folded = self._folded()
        for n in sorted(folded.releases, reverse=True):
            if before is not None and n >= before:
                continue
            c = folded.releases[n]["clouds"].get(cloud)
            if c is not None and c["status"] == "deployed":
                return folded.release(n).clouds[cloud]
        return None

    def current(self, cloud: str) -> CloudRelease | None:
        return self._deployed(cloud)

    def previous(self, cloud: str, *, before: int) -> CloudRelease | None:
        return self._deployed(cloud, before)

    def current_cloud_values(self, cloud: str) -> dict[str, Any] | None:
        return render_values(self.current(cloud))

    def iter_clouds(self) -> Iterator[str]:
        folded = self._folded()
        yield from sorted({c for r in folded.releases.values() for c in r["clouds"]})
