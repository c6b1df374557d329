"""The log replicated over several object stores: a write commits on a majority, a read takes
what a majority can hold.

    <prefix>/state/<service>/log/0000000001.json   immutable records (``records.py``)
    <prefix>/state/<service>/lease.json             the deploy lease (``lease.py``)

Appending record ``n`` creates ``log/n`` only if absent on every store at once. It commits
when a majority of the configured stores accepted it. A writer that got fewer deletes the
copies it made (so they cannot be mistaken for the record that won), re-reads, and tries
the next number. Two writers can therefore never both commit the same number.

Reading lists ``log/`` on every store, fetches what the local cache lacks (records never
change, so a cached copy is keyed by the store's version of the object), and walks the
chain from record 1. At each number the candidates are the valid copies whose ``prev`` is
the record chosen before. A candidate is possibly committed when its copies plus the
stores that did not answer reach a majority: a committed record is on a majority, so with
a majority answering at least one answering store has it. When two candidates remain
(a writer that lost a race and died before cleaning up), the one the next record names
wins, else the one with more copies, then the higher fence. The walk stops at the first
number with no possibly-committed candidate.

Repair (on taking the lease, and ``mco state verify --repair``) copies the chosen record to
a store that lacks it, and replaces a copy that differs (a loser of a race, or a corrupt
one) under ``If-Match`` of the version read.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.errors import MCOError, PreconditionFailed, ReleaseError, StateUnavailable
from orchestrator.providers.base import ConditionalStore, Listed
from orchestrator.releases.state.records import GENESIS, Corrupt, Record, decode, encode

__all__ = ["LogView", "Replicas", "StoreReport"]

T = TypeVar("T")
_LOG = "log/"
_WINDOW = 100       # records per listing window (the 10-digit number's first 8 digits)
FULL_EVERY_S = 5.0  # list every store whole at least this often


def _seq_of(name: str) -> int | None:
    stem = name.rsplit("/", 1)[-1].removesuffix(".json")
    return int(stem) if stem.isdigit() else None


@dataclass
class StoreReport:
    """What one store holds compared with the chosen log (``mco state verify``)."""

    name: str
    where: str
    reachable: bool
    error: str | None = None
    records: int = 0
    missing: list[int] = field(default_factory=list)    # chosen records this store lacks (it lags)
    differing: list[int] = field(default_factory=list)  # holds another record at that number
    corrupt: list[dict[str, Any]] = field(default_factory=list)
    extra: list[int] = field(default_factory=list)      # records past the chosen log (uncommitted)

    @property
    def in_sync(self) -> bool:
        return self.reachable and not (self.missing or self.differing or self.corrupt or self.extra)

    def summary(self) -> dict[str, Any]:
        return {"store": self.name, "where": self.where, "reachable": self.reachable, "error": self.error,
                "records": self.records, "missing": self.missing, "differing": self.differing,
                "corrupt": self.corrupt, "extra": self.extra, "in_sync": self.in_sync}


@dataclass
class LogView:
    """The chosen log and what each store said while it was read."""

    records: list[Record]
    unreachable: dict[str, str]                       # store -> error message
    # per store: {seq: (version, Record | Corrupt)}
    held: dict[str, dict[int, tuple[str, Record | Corrupt]]]
    majority: int
    configured: int

    @property
    def head(self) -> tuple[int, str]:
        return (self.records[-1].seq, self.records[-1].sha256) if self.records else (0, GENESIS)

    @property
    def max_fence(self) -> int:
        fences = [r.fence for r in self.records]
        return max(fences) if fences else 0

    @property
    def possibly_stale(self) -> bool:
        """Fewer than a majority answered: a newer committed record may sit on the others."""
        return self.configured - len(self.unreachable) < self.majority

    def reports(self, wheres: dict[str, str]) -> list[StoreReport]:
        chosen = {r.seq: r.sha256 for r in self.records}
        last = self.head[0]
        out = []
        for name in wheres:
            if name in self.unreachable:
                out.append(StoreReport(name, wheres[name], False, error=self.unreachable[name]))
                continue
            rep = StoreReport(name, wheres[name], True, records=len(self.held[name]))
            for seq, (_version, rec) in sorted(self.held[name].items()):
                if isinstance(rec, Corrupt):
                    rep.corrupt.append({"record": seq, "reason": rec.reason})
                elif seq > last:
                    rep.extra.append(seq)
                elif chosen.get(seq) != rec.sha256:
                    rep.differing.append(seq)
            rep.missing = [s for s in chosen if s not in self.held[name]]
            out.append(rep)
        return out


class Replicas:
    """A service's state on every configured store; operations run on all stores in parallel."""

    def __init__(self, stores: dict[str, ConditionalStore], root: str, *, cache_dir: Path | None = None) -> None:
        if not stores:
            raise ReleaseError("the objectstore state backend needs at least one store")
        self.stores = stores
        self.root = root.strip("/") + "/"
        self.majority = len(stores) // 2 + 1
        self.cache_dir = cache_dir
        self._pool = ThreadPoolExecutor(max(4, 3 * len(stores)), "mco-state")
        # Record fetches get their own pool: a store's read runs in ``_pool`` and waits on them.
        self._fetches = ThreadPoolExecutor(16, "mco-state-get")
        # Records never change: a version once decoded and checked is kept (store, number, version).
        self._memo: dict[tuple[str, int, str], Record] = {}
        self._known: dict[str, dict[int, tuple[str, Record | Corrupt]]] = {}  # per store, from the last read
        self._head = 0
        self._full_at = 0.0

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._fetches.shutdown(wait=False, cancel_futures=True)
        for store in self.stores.values():
            with contextlib.suppress(Exception):
                store.close()

    def key(self, name: str) -> str:
        return self.root + name

    def log_key(self, seq: int) -> str:
        return f"{self.root}{_LOG}{seq:010d}.json"

    def wheres(self) -> dict[str, str]:
        return {name: store.where() for name, store in self.stores.items()}

    def each(self, fn: Callable[[str, ConditionalStore], T],
             names: list[str] | None = None) -> dict[str, T | MCOError]:
        """``fn`` on every store (or ``names``) in parallel; a store's ``MCOError`` becomes its result."""
        chosen = names if names is not None else list(self.stores)

        def run(name: str) -> T | MCOError:
            try:
                return fn(name, self.stores[name])
            except MCOError as exc:
                return exc

        return dict(zip(chosen, self._pool.map(run, chosen)))

    # ---------------------------------------------------------------- reading

    def _cached(self, name: str, seq: int, version: str) -> Path | None:
        if self.cache_dir is None:
            return None
        tag = hashlib.sha256(version.encode()).hexdigest()[:16]
        return self.cache_dir / name / f"{seq:010d}-{tag}.json"

    def _from_disk(self, name: str, seq: int, version: str) -> Record | None:
        memo = self._memo.get((name, seq, version))
        if memo is not None:
            return memo
        path = self._cached(name, seq, version)
        if path is not None and path.is_file():
            rec = decode(path.read_bytes(), seq=seq)
            if isinstance(rec, Record):
                self._memo[(name, seq, version)] = rec
                return rec
        return None

    def _keep(self, name: str, seq: int, version: str, data: bytes) -> Record | Corrupt:
        rec = decode(data, seq=seq)
        if isinstance(rec, Record):
            self._memo[(name, seq, version)] = rec
            if (cache := self._cached(name, seq, version)) is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_suffix(f".{threading.get_ident()}.tmp")
                tmp.write_bytes(data)
                tmp.replace(cache)
        return rec

    def _list(self, store: ConditionalStore, *, from_seq: int) -> dict[int, Listed]:
        """The records numbered ``from_seq`` or more (all when 1), with versions and MD5s.

        A listing costs time in proportion to the keys it returns, so a reader that already
        knows the log lists only the windows of 100 numbers from where it stopped: the
        prefix ``log/00000001`` holds records 100-199. It goes on to the next window while
        the last one is full to its end (committed records have no gaps)."""
        if from_seq <= 1:
            listing = store.listing(self.root + _LOG)
            return {seq: v for k, v in listing.items() if (seq := _seq_of(k)) is not None}
        out: dict[int, Listed] = {}
        window = from_seq // _WINDOW
        while True:
            listing = store.listing(f"{self.root}{_LOG}{window:08d}")
            found = {seq: v for k, v in listing.items() if (seq := _seq_of(k)) is not None}
            out.update(found)
            if (window + 1) * _WINDOW - 1 not in found:
                return out
            window += 1

    def _fetch_all(self, listings: dict[str, dict[int, Listed]]) -> tuple[dict[str, dict[int, tuple[str, Record | Corrupt]]],
                                                                          dict[str, str]]:
        """Every listed record, each distinct copy fetched once: copies whose listed MD5 is the
        same are the same bytes, so one GET serves every store that holds them. Returns what
        each store holds, and the stores that failed while being read."""
        held: dict[str, dict[int, tuple[str, Record | Corrupt]]] = {n: {} for n in listings}
        sources: dict[tuple[Any, ...], list[str]] = {}  # a distinct copy -> the stores holding it
        for name, listed in listings.items():
            for seq, li in listed.items():
                rec = self._from_disk(name, seq, li.version)
                if rec is not None:
                    held[name][seq] = (li.version, rec)
                    continue
                ident = (seq, li.md5) if li.md5 else (seq, name, li.version)
                sources.setdefault(ident, []).append(name)

        def get(ident: tuple[Any, ...]) -> tuple[bytes | None, list[str]]:
            failed = []
            for name in sources[ident]:  # the first store that answers serves them all
                try:
                    got = self.stores[name].read(self.log_key(ident[0]))
                except MCOError:
                    failed.append(name)
                    continue
                return (got.data if got is not None else None), failed
            return None, failed

        broken: dict[str, str] = {}
        for ident, (data, failed) in zip(sources, self._fetches.map(get, sources)):
            seq = ident[0]
            for name in sources[ident]:
                if name in failed:
                    if data is None:
                        broken[name] = f"{name}: could not read record {seq}"
                    continue
                if data is None:
                    continue  # deleted since the listing (a writer cleaning up after a lost race)
                li = listings[name][seq]
                if li.md5 and hashlib.md5(data).hexdigest() != li.md5:
                    continue  # changed since the listing; the next read sees it again
                held[name][seq] = (li.version, self._keep(name, seq, li.version, data))
        return held, broken

    def read(self, *, full: bool = False) -> LogView:
        """Every store's log, and the chain chosen from them (see the module docstring).

        After a first full read, a read lists only what lies past the chosen head, and keeps
        what it knew of each store below it (records never change; repair is the exception,
        and repairs what it saw). Every ``FULL_EVERY_S``, after a store failed to answer (it
        may have come back empty), and when ``full``, every store is listed whole."""
        now = time.monotonic()
        if full or now - self._full_at > FULL_EVERY_S:
            self._known.clear()
        head = self._head + 1

        known = dict(self._known)
        was_full = not known

        def listing(name: str, store: ConditionalStore) -> dict[int, Listed]:
            return self._list(store, from_seq=head if name in known else 1)

        listed = self.each(listing)
        unreachable = {n: r.message for n, r in listed.items() if isinstance(r, MCOError)}
        fresh, broken = self._fetch_all({n: r for n, r in listed.items() if not isinstance(r, MCOError)})
        unreachable.update(broken)
        held: dict[str, dict[int, tuple[str, Record | Corrupt]]] = {}
        for name, records in fresh.items():
            if name in unreachable:
                continue
            start = (head // _WINDOW) * _WINDOW if name in known else 0
            held[name] = {s: v for s, v in known.get(name, {}).items() if s < start}
            held[name].update(records)
        self._known = {n: dict(h) for n, h in held.items()}
        if was_full:
            self._full_at = now
        missing_votes = len(unreachable)
        chain: list[Record] = []
        prev = GENESIS
        seq = 1
        while True:
            candidates = self._candidates(held, seq, prev, missing_votes)
            if not candidates:
                break
            if len(candidates) > 1:
                nexts = {r.prev for r, _ in self._candidates_any(held, seq + 1)}
                named = [c for c in candidates if c[0].sha256 in nexts]
                if len(named) == 1:
                    candidates = named
                candidates.sort(key=lambda c: (c[1], c[0].fence), reverse=True)
            chosen = candidates[0][0]
            chain.append(chosen)
            prev = chosen.sha256
            seq += 1
        self._head = len(chain)
        return LogView(chain, unreachable, held, self.majority, len(self.stores))

    def _candidates_any(self, held: dict[str, dict[int, tuple[str, Record | Corrupt]]],
                        seq: int) -> list[tuple[Record, int]]:
        counts: dict[str, tuple[Record, int]] = {}
        for copies in held.values():
            got = copies.get(seq)
            if got is not None and isinstance(got[1], Record):
                rec = got[1]
                counts[rec.sha256] = (rec, counts.get(rec.sha256, (rec, 0))[1] + 1)
        return list(counts.values())

    def _candidates(self, held: dict[str, dict[int, tuple[str, Record | Corrupt]]], seq: int, prev: str,
                    missing_votes: int) -> list[tuple[Record, int]]:
        return [(rec, n) for rec, n in self._candidates_any(held, seq)
                if rec.prev == prev and n + missing_votes >= self.majority]

    # ---------------------------------------------------------------- writing

    def append(self, view: LogView, *, fence: int, type: str, at: str, by: str,
               data: dict[str, Any]) -> tuple[Record, list[str]]:
        """Commit one record after ``view``'s head; returns it and the stores that lag.

        ``PreconditionFailed`` when another record took the number on a majority (re-read
        and try again); ``StateUnavailable`` when too few stores answered."""
        seq, prev = view.head
        payload, record = encode(Record(seq=seq + 1, prev=prev, fence=fence, type=type, at=at, by=by, data=data))
        key = self.log_key(record.seq)
        results = self.each(lambda _n, s: s.create(key, payload))
        won = {n: v for n, v in results.items() if isinstance(v, str)}
        if len(won) >= self.majority:
            for name, version in won.items():  # the view now knows where the new record is
                view.held.setdefault(name, {})[record.seq] = (version, record)
                self._memo[(name, record.seq, version)] = record
            self._head = max(self._head, record.seq)
            return record, [n for n in results if n not in won]
        # Not committed: take back our copies, so no reader can take them for the record that won.
        self.each(lambda n, s: s.delete_if(key, version=won[n]), list(won))
        lost = [n for n, r in results.items() if isinstance(r, PreconditionFailed)]
        down = {n: r.message for n, r in results.items() if isinstance(r, MCOError) and n not in lost}
        if lost:
            raise PreconditionFailed(f"record {record.seq} was written by another process on {', '.join(lost)}")
        raise StateUnavailable(
            f"the history could not be written: {len(won)} of {len(self.stores)} stores accepted record "
            f"{record.seq}; a majority ({self.majority}) is needed. Unreachable: "
            + "; ".join(f"{n} ({m})" for n, m in down.items()),
            unreachable=sorted(down), hint="bring the stores back (`mco local status storage` for the emulators)")

    def repair(self, view: LogView, *, extra: bool = False) -> dict[str, list[int]]:
        """Make every reachable store hold the chosen log; ``extra`` also removes records past it
        (only under the lease: no writer may be appending). Returns ``{store: records written}``."""
        chosen = {r.seq: r for r in view.records}

        def mend(name: str, store: ConditionalStore) -> list[int]:
            done = []
            copies = view.held.get(name, {})
            for seq, rec in chosen.items():
                got = copies.get(seq)
                if got is not None and isinstance(got[1], Record) and got[1].sha256 == rec.sha256:
                    continue
                payload, _ = encode(rec)
                key = self.log_key(seq)
                try:
                    if got is None:
                        store.create(key, payload)
                    else:
                        store.replace(key, payload, version=got[0])
                except PreconditionFailed:
                    continue  # changed since it was read: the next verify sees it again
                done.append(seq)
            if extra:
                for seq, (version, _rec) in copies.items():
                    if seq not in chosen:
                        store.delete_if(self.log_key(seq), version=version)
                        done.append(seq)
            return done

        names = [n for n in self.stores if n not in view.unreachable]
        done = {n: r for n, r in self.each(mend, names).items() if isinstance(r, list) and r}
        if done:
            self._known.clear()  # the stores changed below the head: the next read lists them whole
        return done
