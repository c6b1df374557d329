"""Release history: one record per release, shared by all clouds, in SQLite.

A release names the model bundle digest and, per cloud, the image digest, the image
reference the manifests use, the rendered manifests themselves, and that cloud's status.
It records who made it and when, whether the evaluation gate was forced, and for a
rollback which release it points back to. Rollback re-applies recorded manifests, so the
record is complete enough to restore a cloud without rebuilding or pushing anything.

Every write is one SQLite transaction (WAL journal): a crash leaves either the old record
or the new one. A deploy that dies mid-way leaves clouds in ``applying``; the next deploy,
holding the service lock, marks them ``interrupted`` (see ``recover_interrupted``).

    releases        number, service, kind (deploy|rollback), model_digest, bundle_ref,
                    created_by, created_at, finished_at, gate_forced, gate_summary,
                    rollback_of, status (in_progress|deployed|partial|failed|rolled_back|interrupted)
    release_clouds  release, cloud, model_digest, image_digest, image_ref, overlay, replicas,
                    manifests (JSON), status (pending|applying|deployed|failed|rolled_back|interrupted),
                    reason, detail, ready_replicas, endpoint, source_release, rolled_back_to, updated_at
    release_analysis release, doc (JSON): a waves deploy's waves, steps, measured values and
                    abort reason, rewritten after every step (a deploy killed with -9 leaves
                    its last step here, and its clouds become ``interrupted``)
"""

from __future__ import annotations

import getpass
import json
import socket
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.config import MCOConfig
from orchestrator.errors import ReleaseError

__all__ = [
    "CloudPlan",
    "CloudRelease",
    "Release",
    "ReleaseStore",
    "current_user",
    "open_store",
    "state_dir_for",
]

SCHEMA_VERSION = 1
ROUTER_DEPLOYMENT = "mco-router"  # kube/router.py; a name, so the store needs nothing from kube/
# skipped: a waves deploy stopped before this cloud's wave; the cloud was never touched
CLOUD_FINAL = frozenset({"deployed", "failed", "rolled_back", "interrupted", "skipped"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS releases (
    number       INTEGER NOT NULL,
    service      TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('deploy', 'rollback')),
    model_digest TEXT NOT NULL,
    bundle_ref   TEXT,
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    finished_at  TEXT,
    gate_forced  INTEGER NOT NULL DEFAULT 0,
    gate_summary TEXT,
    rollback_of  INTEGER,
    status       TEXT NOT NULL,
    PRIMARY KEY (service, number)
);
CREATE TABLE IF NOT EXISTS release_clouds (
    service        TEXT NOT NULL,
    release        INTEGER NOT NULL,
    cloud          TEXT NOT NULL,
    model_digest   TEXT NOT NULL,
    image_digest   TEXT,
    image_ref      TEXT NOT NULL,
    overlay        TEXT NOT NULL,
    replicas       INTEGER NOT NULL,
    manifests      TEXT NOT NULL,
    status         TEXT NOT NULL,
    reason         TEXT,
    detail         TEXT,
    ready_replicas INTEGER,
    endpoint       TEXT,
    source_release INTEGER,
    rolled_back_to INTEGER,
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (service, release, cloud),
    FOREIGN KEY (service, release) REFERENCES releases (service, number)
);
CREATE TABLE IF NOT EXISTS release_analysis (
    service    TEXT NOT NULL,
    release    INTEGER NOT NULL,
    doc        TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (service, release)
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# The fields ``update_cloud`` may change, in either state backend.
CLOUD_FIELDS = frozenset({"status", "reason", "detail", "ready_replicas", "endpoint", "rolled_back_to"})


def check_cloud_fields(fields: dict[str, Any]) -> None:
    unknown = set(fields) - CLOUD_FIELDS
    if unknown:
        raise ValueError(f"unknown release cloud fields: {sorted(unknown)}")


def current_user() -> str:
    """``user@host`` of whoever runs mco."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class CloudPlan:
    """What a release intends for one cloud, recorded before anything is applied."""

    model_digest: str
    image_ref: str
    image_digest: str | None
    overlay: str
    replicas: int
    manifests: list[dict[str, Any]]
    endpoint: str | None = None
    source_release: int | None = None  # rollbacks: the release whose manifests these are


@dataclass(frozen=True)
class CloudRelease:
    release: int
    cloud: str
    model_digest: str
    image_digest: str | None
    image_ref: str
    overlay: str
    replicas: int
    manifests: list[dict[str, Any]]
    status: str
    reason: str | None
    detail: str | None
    ready_replicas: int | None
    endpoint: str | None
    source_release: int | None
    rolled_back_to: int | None
    updated_at: str

    @property
    def router_image(self) -> str | None:
        """The router image (by digest) this release runs next to the model on this cloud, read
        from its recorded manifests: a rollback re-applies them, so it restores this image too."""
        for obj in self.manifests:
            if obj.get("kind") == "Deployment" and obj.get("metadata", {}).get("name") == ROUTER_DEPLOYMENT:
                image = obj["spec"]["template"]["spec"]["containers"][0].get("image")
                return str(image) if image else None
        return None

    def summary(self) -> dict[str, Any]:
        """The per-cloud part of ``mco deploy --output json`` and ``mco history``."""
        out: dict[str, Any] = {
            "status": self.status, "model_digest": self.model_digest, "image_digest": self.image_digest,
            "image_ref": self.image_ref, "ready_replicas": self.ready_replicas, "endpoint": self.endpoint,
        }
        router_image = self.router_image
        if router_image:
            out["router_image"] = router_image
        if self.reason:
            out["reason"] = self.reason
        if self.detail:
            out["detail"] = self.detail
        if self.source_release is not None:
            out["source_release"] = self.source_release
        if self.rolled_back_to is not None:
            out["rolled_back_to"] = self.rolled_back_to
        return out


@dataclass(frozen=True)
class Release:
    number: int
    service: str
    kind: str
    model_digest: str
    bundle_ref: str | None
    created_by: str
    created_at: str
    finished_at: str | None
    gate_forced: bool
    gate_summary: str | None
    rollback_of: int | None
    status: str
    clouds: dict[str, CloudRelease] = field(default_factory=dict)
    analysis: dict[str, Any] | None = None  # a waves deploy's record (release_analysis)

    def summary(self, *, manifests: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "release": self.number, "kind": self.kind, "status": self.status, "model_digest": self.model_digest,
            "bundle_ref": self.bundle_ref, "created_by": self.created_by, "created_at": self.created_at,
            "finished_at": self.finished_at, "gate_forced": self.gate_forced,
        }
        if self.gate_summary:
            out["gate"] = self.gate_summary
        if self.rollback_of is not None:
            out["rollback_of"] = self.rollback_of
        clouds = {}
        for name, cloud in self.clouds.items():
            clouds[name] = cloud.summary()
            if manifests:
                clouds[name]["manifests"] = cloud.manifests
        out["clouds"] = clouds
        if self.analysis is not None:
            out["waves"] = self.analysis
        return out


def _overall(statuses: list[str]) -> str:
    if not statuses:
        return "failed"
    if "skipped" in statuses:
        touched = [st for st in statuses if st != "skipped"]
        if not touched or any(st not in CLOUD_FINAL for st in touched):
            return "in_progress" if touched else "failed"
        return "partial" if "deployed" in touched else _overall(touched)
    if any(s not in CLOUD_FINAL for s in statuses):
        return "in_progress"
    if all(s == "deployed" for s in statuses):
        return "deployed"
    if any(s == "deployed" for s in statuses):
        return "partial"
    if all(s == "rolled_back" for s in statuses):
        return "rolled_back"
    if any(s == "interrupted" for s in statuses):
        return "interrupted"
    return "failed"


def render_values(cur: CloudRelease | None) -> dict[str, Any] | None:
    """What ``mco render`` takes as defaults from the release live on a cloud (either state backend)."""
    if cur is None:
        return None
    return {"release": cur.release, "model_digest": cur.model_digest, "image_ref": cur.image_ref,
            "replicas": cur.replicas}


class ReleaseStore:
    """The history of one service (the project), in ``<state_dir>/releases.db``."""

    def __init__(self, path: Path, service: str) -> None:
        self.path = Path(path)
        self.service = service
        # One connection shared by the per-cloud deploy threads: calls take turns.
        self._mutex = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE in _tx).
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as exc:
            raise ReleaseError(f"cannot open release history {self.path}: {exc}",
                               hint="check the file is an mco release database and the directory is writable") from exc
        version = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        if int(version) != SCHEMA_VERSION:
            raise ReleaseError(f"release history {self.path} has schema version {version}; this mco reads {SCHEMA_VERSION}",
                               hint="use the mco version that wrote it")

    # -- plumbing

    class _Tx:
        def __init__(self, db: sqlite3.Connection, mutex: threading.RLock) -> None:
            self.db = db
            self.mutex = mutex

        def __enter__(self) -> sqlite3.Connection:
            self.mutex.acquire()
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.mutex.release()
                raise
            return self.db

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            try:
                self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            finally:
                self.mutex.release()

    def _tx(self) -> ReleaseStore._Tx:
        return ReleaseStore._Tx(self._db, self._mutex)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._mutex:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ReleaseStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writes

    def begin(self, *, kind: str, model_digest: str, clouds: dict[str, CloudPlan], bundle_ref: str | None = None,
              gate_forced: bool = False, gate_summary: str | None = None, rollback_of: int | None = None,
              created_by: str | None = None) -> int:
        """Record a new release with every cloud ``pending``; returns its number."""
        if not clouds:
            raise ReleaseError("a release needs at least one cloud")
        now = _now()
        with self._tx() as db:
            row = db.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM releases WHERE service=?", (self.service,)).fetchone()
            number = int(row[0])
            db.execute(
                "INSERT INTO releases (number, service, kind, model_digest, bundle_ref, created_by, created_at,"
                " gate_forced, gate_summary, rollback_of, status) VALUES (?,?,?,?,?,?,?,?,?,?, 'in_progress')",
                (number, self.service, kind, model_digest, bundle_ref, created_by or current_user(), now,
                 int(gate_forced), gate_summary, rollback_of),
            )
            for cloud, plan in clouds.items():
                db.execute(
                    "INSERT INTO release_clouds (service, release, cloud, model_digest, image_digest, image_ref, overlay,"
                    " replicas, manifests, status, endpoint, source_release, updated_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?, 'pending', ?,?,?)",
                    (self.service, number, cloud, plan.model_digest, plan.image_digest, plan.image_ref, plan.overlay,
                     plan.replicas, json.dumps(plan.manifests, sort_keys=True), plan.endpoint, plan.source_release, now),
                )
        return number

    def update_cloud(self, number: int, cloud: str, **fields: Any) -> None:
        check_cloud_fields(fields)
        if not fields:
            return
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._tx() as db:
            cur = db.execute(f"UPDATE release_clouds SET {cols}, updated_at=? WHERE service=? AND release=? AND cloud=?",
                             (*fields.values(), _now(), self.service, number, cloud))
            if cur.rowcount != 1:
                raise ReleaseError(f"release {number} has no cloud '{cloud}'")
            self._refresh_status(db, number)

    def set_analysis(self, number: int, doc: dict[str, Any]) -> None:
        """Record (replace) a waves deploy's analysis of release ``number``."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO release_analysis (service, release, doc, updated_at) VALUES (?,?,?,?)",
                       (self.service, number, json.dumps(doc, sort_keys=True), _now()))

    def finish(self, number: int) -> Release:
        """Stamp the finish time and the overall status from the clouds' statuses."""
        with self._tx() as db:
            self._refresh_status(db, number)
            db.execute("UPDATE releases SET finished_at=? WHERE service=? AND number=?", (_now(), self.service, number))
        return self.get(number)

    def _refresh_status(self, db: sqlite3.Connection, number: int) -> None:
        statuses = [r[0] for r in db.execute(
            "SELECT status FROM release_clouds WHERE service=? AND release=?", (self.service, number))]
        db.execute("UPDATE releases SET status=? WHERE service=? AND number=?", (_overall(statuses), self.service, number))

    def recover_interrupted(self) -> list[int]:
        """Mark clouds a dead deploy left unfinished as ``interrupted``. Call while holding the lock."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT DISTINCT release FROM release_clouds WHERE service=? AND status IN ('pending', 'applying')",
                (self.service,)).fetchall()
            numbers = [int(r[0]) for r in rows]
            for number in numbers:
                db.execute(
                    "UPDATE release_clouds SET status='interrupted', reason='deploy interrupted',"
                    " detail='the mco process ended before this cloud finished; its live state is unknown', updated_at=?"
                    " WHERE service=? AND release=? AND status IN ('pending', 'applying')", (_now(), self.service, number))
                self._refresh_status(db, number)
                db.execute("UPDATE releases SET finished_at=COALESCE(finished_at, ?) WHERE service=? AND number=?",
                           (_now(), self.service, number))
        return numbers

    # -- reads

    def _cloud(self, row: sqlite3.Row) -> CloudRelease:
        return CloudRelease(
            release=row["release"], cloud=row["cloud"], model_digest=row["model_digest"], image_digest=row["image_digest"],
            image_ref=row["image_ref"], overlay=row["overlay"], replicas=row["replicas"],
            manifests=json.loads(row["manifests"]), status=row["status"], reason=row["reason"], detail=row["detail"],
            ready_replicas=row["ready_replicas"], endpoint=row["endpoint"], source_release=row["source_release"],
            rolled_back_to=row["rolled_back_to"], updated_at=row["updated_at"],
        )

    def _release(self, row: sqlite3.Row) -> Release:
        clouds = {r["cloud"]: self._cloud(r) for r in self._query(
            "SELECT * FROM release_clouds WHERE service=? AND release=? ORDER BY cloud", (self.service, row["number"]))}
        return Release(
            number=row["number"], service=row["service"], kind=row["kind"], model_digest=row["model_digest"],
            bundle_ref=row["bundle_ref"], created_by=row["created_by"], created_at=row["created_at"],
            finished_at=row["finished_at"], gate_forced=bool(row["gate_forced"]), gate_summary=row["gate_summary"],
            rollback_of=row["rollback_of"], status=row["status"], clouds=clouds,
            analysis=next((json.loads(r["doc"]) for r in self._query(
                "SELECT doc FROM release_analysis WHERE service=? AND release=?", (self.service, row["number"]))), None),
        )

    def get(self, number: int) -> Release:
        rows = self._query("SELECT * FROM releases WHERE service=? AND number=?", (self.service, number))
        row = rows[0] if rows else None
        if row is None:
            latest = self.latest_number()
            raise ReleaseError(f"there is no release {number} of {self.service}",
                               hint=f"releases go from 1 to {latest}; see `mco history`" if latest else "deploy one first")
        return self._release(row)

    def latest_number(self) -> int:
        return int(self._query("SELECT COALESCE(MAX(number), 0) FROM releases WHERE service=?", (self.service,))[0][0])

    def list(self, *, limit: int | None = None) -> list[Release]:
        sql = "SELECT * FROM releases WHERE service=? ORDER BY number DESC"
        params: tuple[Any, ...] = (self.service,)
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)
        return [self._release(r) for r in self._query(sql, params)]

    def current(self, cloud: str) -> CloudRelease | None:
        """What runs on ``cloud`` now: its most recent release that reached ``deployed``."""
        rows = self._query(
            "SELECT * FROM release_clouds WHERE service=? AND cloud=? AND status='deployed' ORDER BY release DESC LIMIT 1",
            (self.service, cloud))
        return self._cloud(rows[0]) if rows else None

    def previous(self, cloud: str, *, before: int) -> CloudRelease | None:
        """The most recent release before ``before`` that reached ``deployed`` on ``cloud``."""
        rows = self._query(
            "SELECT * FROM release_clouds WHERE service=? AND cloud=? AND status='deployed' AND release<?"
            " ORDER BY release DESC LIMIT 1", (self.service, cloud, before))
        return self._cloud(rows[0]) if rows else None

    def current_cloud_values(self, cloud: str) -> dict[str, Any] | None:
        """The release values now live on ``cloud`` (for ``mco render`` defaults)."""
        return render_values(self.current(cloud))

    def iter_clouds(self) -> Iterator[str]:
        for row in self._query("SELECT DISTINCT cloud FROM release_clouds WHERE service=? ORDER BY cloud", (self.service,)):
            yield row[0]


def state_dir_for(cfg: MCOConfig) -> Path:
    """``project.state_dir``, relative to the config file's directory when it is relative."""
    state_dir = Path(cfg.project.state_dir)
    if not state_dir.is_absolute() and cfg.source is not None:
        state_dir = Path(cfg.source).resolve().parent / state_dir
    return state_dir


def open_store(cfg: MCOConfig, *, create: bool = True) -> ReleaseStore | None:
    """The project's history store; ``None`` when ``create`` is false and none exists yet."""
    path = state_dir_for(cfg) / "releases.db"
    if not create and not path.is_file():
        return None
    return ReleaseStore(path, cfg.project.name)
