"""The router's event log: every ejection, readmission, health change and failover, timestamped.

Events are rare (state transitions, not requests), so appending is allowed to be a
little slower than the hot path: a lock, a deque and, optionally, one JSON line per
event appended to a file that drills and plots read afterwards.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["EVENT_KINDS", "Event", "EventLog"]

EVENT_KINDS = (
    "health_down", "health_up",        # active checks crossed a threshold
    "ejection", "readmission",         # passive outlier detection
    "failover", "failback",            # the preferred healthy target changed
    "all_down", "recovered",           # no healthy target / at least one again
    "targets_reloaded",
    "drift", "drift_cleared",          # live PSI drift of a cloud/release crossed router.feedback.drift_threshold
    "live_metrics_failed",             # the live-metrics refresh failed (the reason is in the event)
    "weights_changed",                 # the admin API moved traffic shares (a waves deploy)
)


@dataclass(frozen=True)
class Event:
    seq: int
    ts: float
    kind: str
    target: str | None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["time"] = datetime.fromtimestamp(self.ts, tz=UTC).isoformat(timespec="milliseconds")
        return out


class EventLog:
    def __init__(self, *, capacity: int = 10_000, path: Path | None = None) -> None:
        self._events: deque[Event] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._seq = 0
        self._path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, kind: str, target: str | None = None, **detail: Any) -> Event:
        with self._lock:
            self._seq += 1
            event = Event(self._seq, time.time(), kind, target, detail)
            self._events.append(event)
            if self._path is not None:
                with open(self._path, "a") as fh:
                    fh.write(json.dumps(event.to_dict()) + "\n")
        return event

    def since(self, seq: int = 0) -> list[Event]:
        with self._lock:
            return [e for e in self._events if e.seq > seq]

    def __len__(self) -> int:
        return len(self._events)
