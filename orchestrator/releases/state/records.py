"""The history as a log of immutable, numbered records, and the fold that turns it into releases.

A record is created once, only if absent, at ``log/<seq>.json``; it is never changed. It
names the record before it (``prev``: that record's sha256, a hash chain) and carries the
fencing number of the lease it was written under. On the wire::

    {"sha256": "<hex of the canonical JSON of body>", "body": {"seq": 7, "prev": "<hex>",
     "fence": 3, "type": "cloud", "at": "...", "by": "user@host", "data": {...}}}

A record whose JSON does not parse, or whose checksum does not match its body, is corrupt:
it is named, and never used.

Record types: ``lease`` (a holder took the lock: the barrier that fences older holders),
``unlock`` (a lock broken by hand), ``begin`` (a new release with its plans and manifests),
``cloud`` (one cloud's fields changed), ``finish``, ``recover`` (interrupted clouds marked),
``import`` (a whole release copied by ``mco state migrate``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from orchestrator.releases.store import CLOUD_FINAL, CloudRelease, Release, _overall

__all__ = ["GENESIS", "Corrupt", "Folded", "Record", "decode", "encode", "fold"]

GENESIS = "0" * 64  # the ``prev`` of record 1


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Record:
    seq: int
    prev: str
    fence: int
    type: str
    at: str
    by: str
    data: dict[str, Any]
    sha256: str = ""

    def body(self) -> dict[str, Any]:
        return {"seq": self.seq, "prev": self.prev, "fence": self.fence, "type": self.type, "at": self.at,
                "by": self.by, "data": self.data}


@dataclass(frozen=True)
class Corrupt:
    """A stored record that cannot be used, and why."""

    reason: str


def encode(record: Record) -> tuple[bytes, Record]:
    """The bytes to store, and the record with its checksum filled in."""
    body = record.body()
    sha = hashlib.sha256(_canonical(body)).hexdigest()
    return json.dumps({"sha256": sha, "body": body}, sort_keys=True).encode(), Record(**body, sha256=sha)


def decode(data: bytes, *, seq: int) -> Record | Corrupt:
    try:
        outer = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Corrupt(f"not JSON ({exc})")
    if not isinstance(outer, dict) or not isinstance(outer.get("body"), dict) or not isinstance(outer.get("sha256"), str):
        return Corrupt("not a record (no body and sha256)")
    body = outer["body"]
    if hashlib.sha256(_canonical(body)).hexdigest() != outer["sha256"]:
        return Corrupt("checksum mismatch: the body was changed after it was written")
    try:
        record = Record(seq=int(body["seq"]), prev=str(body["prev"]), fence=int(body["fence"]), type=str(body["type"]),
                        at=str(body["at"]), by=str(body["by"]), data=dict(body["data"]), sha256=outer["sha256"])
    except (KeyError, TypeError, ValueError) as exc:
        return Corrupt(f"a field is missing or malformed ({exc})")
    if record.seq != seq:
        return Corrupt(f"stored as record {seq} but says it is record {record.seq}")
    return record


@dataclass
class Folded:
    """The releases a log describes, plus what the fold noticed."""

    releases: dict[int, dict[str, Any]] = field(default_factory=dict)
    max_fence: int = 0
    fenced: list[int] = field(default_factory=list)   # records written under a lease already taken over
    events: list[Record] = field(default_factory=list)  # lease and unlock records, newest last

    def release(self, number: int) -> Release:
        r = self.releases[number]
        clouds = {name: CloudRelease(release=number, cloud=name, **c) for name, c in sorted(r["clouds"].items())}
        statuses = [c.status for c in clouds.values()]
        return Release(number=number, service=r["service"], kind=r["kind"], model_digest=r["model_digest"],
                       bundle_ref=r.get("bundle_ref"), created_by=r["created_by"], created_at=r["created_at"],
                       finished_at=r.get("finished_at"), gate_forced=bool(r.get("gate_forced")),
                       gate_summary=r.get("gate_summary"), rollback_of=r.get("rollback_of"),
                       status=_overall(statuses), clouds=clouds, analysis=r.get("analysis"))


_CLOUD_KEYS = ("model_digest", "image_digest", "image_ref", "overlay", "replicas", "manifests", "status", "reason",
               "detail", "ready_replicas", "endpoint", "source_release", "rolled_back_to", "updated_at")


def _cloud(values: dict[str, Any]) -> dict[str, Any]:
    return {k: values.get(k) for k in _CLOUD_KEYS}


def fold(records: list[Record], service: str) -> Folded:
    """Apply ``records`` (the committed chain, in order) to an empty history."""
    out = Folded()
    for rec in records:
        if rec.fence < out.max_fence:
            # Written by a holder whose lease was already taken over: never applied.
            out.fenced.append(rec.seq)
            continue
        out.max_fence = rec.fence
        d = rec.data
        if rec.type in ("lease", "unlock"):
            out.events.append(rec)
        elif rec.type == "begin":
            clouds = {name: _cloud({**plan, "status": "pending", "updated_at": rec.at})
                      for name, plan in d["clouds"].items()}
            out.releases[int(d["number"])] = {
                "service": service, "kind": d["kind"], "model_digest": d["model_digest"],
                "bundle_ref": d.get("bundle_ref"), "created_by": d["created_by"], "created_at": d["created_at"],
                "gate_forced": d.get("gate_forced", False), "gate_summary": d.get("gate_summary"),
                "rollback_of": d.get("rollback_of"), "clouds": clouds}
        elif rec.type == "cloud":
            rel = out.releases.get(int(d["number"]))
            if rel is not None and d["cloud"] in rel["clouds"]:
                rel["clouds"][d["cloud"]].update(d["fields"], updated_at=rec.at)
        elif rec.type == "analysis":  # a waves deploy's record, replaced after every step
            rel = out.releases.get(int(d["number"]))
            if rel is not None:
                rel["analysis"] = d["doc"]
        elif rec.type == "finish":
            rel = out.releases.get(int(d["number"]))
            if rel is not None:
                rel["finished_at"] = rec.at
        elif rec.type == "recover":
            for number in d["numbers"]:
                rel = out.releases.get(int(number))
                if rel is None:
                    continue
                for c in rel["clouds"].values():
                    if c["status"] not in CLOUD_FINAL:
                        c.update(status="interrupted", reason="deploy interrupted", updated_at=rec.at,
                                 detail="the mco process ended before this cloud finished; its live state is unknown")
                rel.setdefault("finished_at", rec.at)
        elif rec.type == "import":
            rel = dict(d["release"])
            rel["service"] = service
            rel["clouds"] = {name: _cloud(c) for name, c in rel["clouds"].items()}
            rel.pop("status", None)  # derived from the clouds' statuses, as SQLite derives it
            out.releases[int(rel.pop("number"))] = rel
    return out
