"""The deploy lock as a lease on a majority of the state stores, with a fencing number.

Taking it: read ``lease.json`` on every store; on each store where it is absent (create
only if absent) or expired (replace only if the version read is still current), write our
own. With a majority written, commit a ``lease`` record to the history carrying our fence
(one more than any fence in the history or in a lease seen): from that record on, the log
refuses anything written under a lower fence. Short of a majority, give back what we took
and wait (``wait_s``) or raise ``LockHeld`` naming the holder.

Holding it: a thread renews it every TTL/3 (replace-if-version-matches). A holder that
cannot renew on a majority for a TTL, or finds its lease replaced, stops writing: every
history write first checks ``fence()``, which raises ``LeaseLost`` once the lease is not
certainly ours. A holder paused past its lease (SIGSTOP, a laptop lid) finds on waking
that its monotonic clock says the lease is too old, and if it still tried, the number it
writes at is taken by the new holder's records, whose higher fence it sees on re-reading.

Expiry and clock skew: a lease is expired when the reader's own monotonic clock has seen
the same version of it, unrenewed, for longer than its TTL (no clock of another machine is
involved), or when the holder's own written expiry (``until``) is older than the reader's
wall clock by more than ``clock_skew_s``. The second rule only breaks long-dead leases
without waiting a TTL; the first is the one a waiting deploy relies on.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from orchestrator.errors import LeaseLost, LockHeld, MCOError, NotFound, PreconditionFailed, StateUnavailable
from orchestrator.releases.lock import ReentrantLock

if TYPE_CHECKING:
    from orchestrator.releases.state.objectstore import ObjectBackend

__all__ = ["Lease", "parse_lease"]

LEASE = "lease.json"


def _wall(ts: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(ts) if ts else None
    except ValueError:
        return None


def parse_lease(data: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return body if isinstance(body, dict) and isinstance(body.get("fence"), int) else None


class Lease(ReentrantLock):
    """``with backend.lock(wait_s=0, purpose="deploy"):`` -- or ``LockHeld`` / ``StateUnavailable``."""

    def __init__(self, backend: ObjectBackend, *, wait_s: float = 0.0, purpose: str = "deploy",
                 poll_s: float = 0.5) -> None:
        self.backend = backend
        self.replicas = backend.replicas
        self.ttl_s = backend.cfg.state.lease_ttl_s
        self.skew_s = backend.cfg.state.clock_skew_s
        self.wait_s = wait_s
        self.purpose = purpose
        self.poll_s = poll_s
        self.token = secrets.token_hex(8)
        self.fence_number = 0
        self._versions: dict[str, str] = {}   # store -> version of our lease there
        self._renewed_at = 0.0                # monotonic, when the last majority renewal was sent
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._depth = 0
        self._since = ""
        self._seen: dict[tuple[str, str], float] = {}  # (store, version) -> monotonic time first seen

    # ------------------------------------------------------------------ who holds it

    def _body(self) -> bytes:
        from orchestrator.releases.store import current_user

        now = datetime.now(UTC)
        return json.dumps({
            "holder": current_user(), "host": socket.gethostname(), "pid": os.getpid(), "purpose": self.purpose,
            "service": self.backend.service, "fence": self.fence_number, "token": self.token, "ttl_s": self.ttl_s,
            "since": self._since, "until": (now + timedelta(seconds=self.ttl_s)).isoformat(timespec="seconds"),
            "renewed": now.isoformat(timespec="milliseconds"),
        }, sort_keys=True).encode()

    def _expired(self, store: str, version: str, body: dict[str, Any] | None) -> bool:
        now = time.monotonic()
        first = self._seen.setdefault((store, version), now)
        if body is None:
            return now - first > self.ttl_s  # unreadable: judged by our clock alone
        if now - first > float(body.get("ttl_s", self.ttl_s)):
            return True
        until = _wall(body.get("until"))
        return until is not None and datetime.now(UTC) > until + timedelta(seconds=self.skew_s)

    # ------------------------------------------------------------------ taking it

    def acquire(self) -> None:
        from orchestrator.releases.store import _now

        deadline = time.monotonic() + self.wait_s
        key = self.replicas.key(LEASE)
        while True:
            reads = self.replicas.each(lambda _n, s: s.read(key))
            down = {n: r.message for n, r in reads.items() if isinstance(r, MCOError)}
            if len(reads) - len(down) < self.replicas.majority:
                if time.monotonic() < deadline:  # --wait: the stores may come back meanwhile
                    time.sleep(self.poll_s * (0.5 + random.random()))
                    continue
                self._refuse_unavailable(down)
            bodies = {n: (r, parse_lease(r.data)) for n, r in reads.items()
                      if r is not None and not isinstance(r, MCOError)}
            takeable = [n for n in reads if n not in down and
                        (n not in bodies or self._expired(n, bodies[n][0].version, bodies[n][1]))]
            payload = b""
            if len(takeable) >= self.replicas.majority:  # else held: the history need not be read
                view = self.backend.read_log()
                fences = [b["fence"] for _v, b in bodies.values() if b is not None]
                self.fence_number = max([view.max_fence, *fences]) + 1
                self._since = _now()
                payload = self._body()
            else:
                takeable = []

            def take(name: str, store: Any, bodies: dict[str, Any] = bodies, payload: bytes = payload) -> str:
                if name in bodies:
                    return str(store.replace(key, payload, version=bodies[name][0].version))
                return str(store.create(key, payload))

            started = time.monotonic()
            results = self.replicas.each(take, takeable)
            won = {n: v for n, v in results.items() if isinstance(v, str)}
            if len(won) >= self.replicas.majority:
                self._versions = won
                self._renewed_at = started
                self._lost = None
                self.backend.active = self
                self._start_renewing()
                try:
                    self.backend.commit_barrier(self, "lease", {"holder": json.loads(payload), "stores": sorted(won)})
                except BaseException:
                    self.release()
                    raise
                return
            self._give_back(won)
            if time.monotonic() >= deadline:
                if won or not bodies:  # lost a race for free stores: read who won, to name them
                    again = self.replicas.each(lambda _n, s: s.read(key))
                    bodies = {n: (r, parse_lease(r.data)) for n, r in again.items()
                              if r is not None and not isinstance(r, MCOError)}
                holder = next((b for _v, b in sorted(bodies.values(), key=lambda vb: -(vb[1] or {}).get("fence", 0))
                               if b is not None), None)
                raise self._held(holder)
            time.sleep(self.poll_s * (0.5 + random.random()))

    def _refuse_unavailable(self, down: dict[str, str]) -> None:
        reachable = len(self.replicas.stores) - len(down)
        raise StateUnavailable(
            f"refused: only {reachable} of {len(self.replicas.stores)} state stores answered; a {self.purpose} needs a "
            f"majority ({self.replicas.majority}). Unreachable: " + "; ".join(f"{n} ({m})" for n, m in down.items()),
            unreachable=sorted(down),
            hint="bring the stores back; `mco history` still prints what the reachable stores hold")

    def _held(self, holder: dict[str, Any] | None) -> LockHeld:
        waited = f" after waiting {self.wait_s:g} s" if self.wait_s else ""
        if holder is None:
            return LockHeld(f"another process is taking the lock of '{self.backend.service}'{waited}",
                            hint="try again, or pass --wait SECONDS to queue behind it")
        return LockHeld(
            f"another {holder.get('purpose', 'deploy')} of '{self.backend.service}' is running "
            f"({holder.get('holder')}, pid {holder.get('pid')}, since {holder.get('since')}, lease until "
            f"{holder.get('until')} by its clock){waited}",
            hint="wait for it to finish, or pass --wait SECONDS to queue behind it; a crashed holder's lease "
                 "expires by itself (`mco state lock` shows it; `mco state unlock --force` breaks it)")

    def _give_back(self, won: dict[str, str]) -> None:
        key = self.replicas.key(LEASE)
        self.replicas.each(lambda n, s: s.delete_if(key, version=won[n]), list(won))

    # ------------------------------------------------------------------ holding it

    def _start_renewing(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name="mco-lease", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        interval = max(0.2, self.ttl_s / 3)
        while not self._stop.wait(interval):
            self.renew()

    def renew(self) -> None:
        if self._lost:
            return
        key = self.replicas.key(LEASE)
        payload = self._body()
        started = time.monotonic()
        held = dict(self._versions)
        results = self.replicas.each(lambda n, s: s.replace(key, payload, version=held[n]), list(held))
        # Replaced by another holder, or deleted (`mco state unlock --force`): not ours any more.
        taken = [n for n, r in results.items() if isinstance(r, (PreconditionFailed, NotFound))]
        for n, r in results.items():
            if isinstance(r, str):
                self._versions[n] = r
            elif n in taken:
                self._versions.pop(n, None)
        renewed = sum(isinstance(r, str) for r in results.values())
        if renewed >= self.replicas.majority:
            self._renewed_at = started
        elif len(taken) >= self.replicas.majority or len(self._versions) < self.replicas.majority:
            self._lost = f"the lease was taken over on {', '.join(taken)}"
        elif time.monotonic() - self._renewed_at > self.ttl_s:
            self._lost = f"the lease could not be renewed on a majority for {self.ttl_s:g} s"

    def fence(self) -> int:
        """Our fencing number, if the lease is certainly still ours; else ``LeaseLost``."""
        if not self._versions:
            raise LeaseLost(f"no lease is held on '{self.backend.service}': history writes need the deploy lock")
        age = time.monotonic() - self._renewed_at
        margin = min(2.0, self.ttl_s / 4)
        if self._lost is None and age > self.ttl_s - margin:
            self._lost = f"the lease was last renewed {age:.1f} s ago; its TTL is {self.ttl_s:g} s"
        if self._lost is not None:
            raise LeaseLost(f"this {self.purpose} no longer holds the lock of '{self.backend.service}': {self._lost}; "
                            "its writes are refused",
                            hint="another deploy may have taken over; see `mco state lock` and `mco history`")
        return self.fence_number

    def mark_fenced(self, why: str) -> None:
        self._lost = why

    def release(self) -> None:
        if self.backend.active is self:
            self.backend.active = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._versions:
            self._give_back(self._versions)
        self._versions = {}

    @property
    def held(self) -> bool:
        return bool(self._versions) and self._lost is None
