"""Request ids, kept predictions and feedback joins: beside the hot path, not in it.

On the hot path (``dataplane/server.py``) a predict answer costs one counter increment,
one small list and one ordered-dict insert: ``KeptPredictions.keep`` stores the raw answer
body, the cloud that answered, its status and latency, and hands back the
``x-mco-request-id``. Nothing is parsed there. Ids are ``<router prefix>-<hex counter>``,
so an id older than the oldest kept one is known to have *expired* rather than never
existed. At ``router.feedback.keep`` entries the oldest goes first and ``dropped`` counts it.

Off the hot path:

* ``POST /v1/feedback`` (``{"request_id", "label"}``, a list of them, or
  ``{"feedback": [...]}``) joins labels to kept answers. A batch is all or nothing: every
  item is checked first. Unknown or expired id: 404 naming it; a label that is not one of
  the answering model's classes, or a malformed item: 422 naming the item. Never a 500.
  The classes come from the model's card, read once per model digest from a target that
  serves it (``GET /v1/model``) in a worker thread.
* ``snapshot(window_s)`` parses the window's answers (once each) and computes the live
  metrics per cloud and release in a worker thread (``monitoring.live``); a background task
  refreshes it every ``refresh_s`` for ``/metrics``, and logs a ``drift`` event when a
  cloud/release's PSI crosses ``drift_threshold`` (and ``drift_cleared`` when it falls back).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.request
from array import array
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

from orchestrator.router.asgi import Reply, json_reply

if TYPE_CHECKING:
    from orchestrator.router.state import Router

__all__ = ["REQUEST_ID_HEADER", "KeptPredictions", "handle_feedback"]

REQUEST_ID_HEADER = b"x-mco-request-id"
_MAX_BATCH = 10_000
_REFRESH_ROWS = 3_000  # the background refresh samples answers without feedback down to about this many
_SERIES_METRICS = ("class_drift_psi", "proba_drift_psi", "live_macro_f1", "live_accuracy", "error_rate", "p95_ms")
# one kept answer: [t, cloud, release, status, latency_s, body, parsed, label]
_T, _CLOUD, _RELEASE, _STATUS, _LATENCY, _BODY, _PARSED, _LABEL = range(8)


class _Problem(Exception):
    def __init__(self, status: int, error: str, **detail: Any) -> None:
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


class KeptPredictions:
    def __init__(self, router: Router, *, capacity: int) -> None:
        self.router = router
        self.capacity = capacity
        self.prefix = secrets.token_hex(4)
        self._prefix_b = self.prefix.encode() + b"-"
        self.items: OrderedDict[int, list[Any]] = OrderedDict()
        self.next_n = 0
        self.dropped = 0
        self.feedback_joined = 0
        self.release_of: dict[str, str] = {}  # cloud -> release label, set through the admin API
        # (cloud, release label) -> the model that label stands for: an answer from another model
        # (a connection still on an old pod, a rollback in flight) is not judged as that release
        self.release_model: dict[tuple[str, str], str] = {}
        self.cards: dict[str, dict[str, Any]] = {}  # model digest -> card
        self._digests: dict[str, str] = {}  # one string object per model digest
        self.snapshot_cache: dict[str, Any] | None = None
        self._drifting: set[tuple[str, str, str]] = set()
        # what `mco monitor --report` draws: per refresh, drift and live F1 per cloud/release (about 1 h at 5 s)
        self.series: deque[dict[str, Any]] = deque(maxlen=720)
        # the gate's metrics on labelled answers, in a child process started on the first labels
        from orchestrator.monitoring.worker import ReportWorker

        self.reports = ReportWorker()

    # -- the hot path -----------------------------------------------------------------
    def keep(self, cloud: str | None, status: int, latency_s: float, body: bytes) -> bytes:
        n = self.next_n
        self.next_n = n + 1
        items = self.items
        items[n] = [time.time(), cloud, self.release_of.get(cloud) if cloud else None, status, latency_s,
                    body if status == 200 else None, None, None]
        if len(items) > self.capacity:
            items.popitem(last=False)
            self.dropped += 1
        return self._prefix_b + b"%x" % n

    # -- ids ----------------------------------------------------------------------------
    def find(self, request_id: Any) -> list[Any]:
        if not isinstance(request_id, str):
            raise _Problem(422, "request_id must be the string the router sent in x-mco-request-id")
        prefix, _, hexn = request_id.partition("-")
        try:
            n = int(hexn, 16)
        except ValueError:
            n = -1
        if prefix != self.prefix or n < 0 or n >= self.next_n:
            raise _Problem(404, f"request id '{request_id}' was not issued by this router",
                           hint="send feedback to the router that answered the request")
        entry = self.items.get(n)
        if entry is None:
            raise _Problem(404, f"request id '{request_id}' has expired: the router keeps the last "
                                f"{self.capacity} answers and {self.dropped} older ones were dropped")
        return entry

    # -- parsing, off the hot path --------------------------------------------------------
    def parsed(self, entry: list[Any]) -> tuple[str | None, list[Any], list[list[float]]] | None:
        """``(model digest, predictions, probabilities)`` of a kept answer; None when it has none."""
        cached = entry[_PARSED]
        if cached is not None:
            return cached or None
        body = entry[_BODY]
        if body is None and entry[_PARSED] is not None:  # parsed meanwhile by another thread
            return entry[_PARSED] or None
        result: Any = ()
        if body is not None:
            try:
                doc = json.loads(body)
                preds, proba = doc["predictions"], doc.get("probabilities") or []
                if isinstance(preds, list) and preds:
                    digest = doc.get("model_digest")
                    # compact: one digest string for all answers of a model, probabilities as float32
                    # arrays (a list of Python floats is 3x the raw body)
                    result = (self._digests.setdefault(digest, digest) if isinstance(digest, str) else None,
                              preds, [array("f", row) for row in proba])
            except (ValueError, KeyError, TypeError):
                pass
        entry[_PARSED] = result
        entry[_BODY] = None  # parsed once; the bytes are no longer needed
        return result or None

    def _card_url(self, entry: list[Any]) -> str | None:
        target = self.router.balancer.targets.get(entry[_CLOUD] or "")
        return f"{target.cfg.url}/v1/model" if target is not None else None

    async def card_for(self, digest: str | None, entry: list[Any]) -> dict[str, Any] | None:
        if not digest:
            return None
        card = self.cards.get(digest)
        if card is not None:
            return card
        url = self._card_url(entry)
        if url is None:
            return None

        def fetch() -> dict[str, Any] | None:
            try:
                with urllib.request.urlopen(url, timeout=2.0) as resp:
                    doc = json.loads(resp.read())
            except (OSError, ValueError):
                return None
            return doc if isinstance(doc, dict) and doc.get("bundle_digest") == digest else None

        card = await asyncio.to_thread(fetch)
        if card is not None:
            self.cards[digest] = card
        return card

    # -- feedback ---------------------------------------------------------------------------
    async def join(self, items: list[Any]) -> dict[str, Any]:
        checked: list[tuple[list[Any], list[Any]]] = []
        for i, item in enumerate(items):
            where = f"item {i}"
            if not isinstance(item, dict) or "request_id" not in item or "label" not in item:
                raise _Problem(422, f"{where} is not {{\"request_id\": ..., \"label\": ...}}", item=i)
            extra = sorted(set(item) - {"request_id", "label"})
            if extra:
                raise _Problem(422, f"{where} has unknown keys: {', '.join(extra)}", item=i)
            try:
                entry = self.find(item["request_id"])
            except _Problem as exc:
                raise _Problem(exc.status, f"{where}: {exc.error}", item=i, **exc.detail) from None
            parsed = self.parsed(entry)
            if parsed is None:
                raise _Problem(422, f"{where}: request '{item['request_id']}' got no prediction "
                                    f"(HTTP {entry[_STATUS]}), there is nothing to label", item=i)
            digest, preds, _ = parsed
            labels = item["label"] if isinstance(item["label"], list) else [item["label"]]
            if len(labels) != len(preds):
                raise _Problem(422, f"{where}: the request had {len(preds)} instances, the feedback has "
                                    f"{len(labels)} labels", item=i)
            card = await self.card_for(digest, entry)
            if card is None:
                raise _Problem(503, f"{where}: the classes of model {str(digest)[:12]} cannot be read from "
                                    f"{entry[_CLOUD]} now", item=i, hint="retry in a moment")
            by_text = {str(c): c for c in card["classes"]}
            joined = []
            for label in labels:
                if isinstance(label, bool) or not isinstance(label, str | int | float) or str(label) not in by_text:
                    raise _Problem(422, f"{where}: label {json.dumps(label)} is not one of the model's classes",
                                   item=i, classes=list(by_text))
                joined.append(by_text[str(label)])
            checked.append((entry, joined))
        for entry, joined in checked:
            entry[_LABEL] = joined
        self.feedback_joined += len(checked)
        return {"joined": len(checked)}

    # -- live metrics --------------------------------------------------------------------------
    async def snapshot(self, window_s: float, *, drift_threshold: float, max_rows: int | None = None,
                       ) -> dict[str, Any]:
        """Live metrics per cloud/release over the last ``window_s``. With ``max_rows`` (the
        background refresh), answers without feedback are sampled evenly down to about that
        many (labelled and failed ones are all kept; counts stay exact): the refresh must not
        hold the GIL long enough to delay the hot path, which at 1,000 requests/s it did."""
        try:
            from orchestrator.monitoring.live import LiveRow, live_metrics, peer_drift
        except ImportError as exc:  # a lean router (the in-cluster image) keeps answers but computes nothing
            from orchestrator.errors import MissingExtraError

            raise MissingExtraError("scikit-learn", "monitor", purpose="live metrics on feedback") from exc

        since = time.time() - window_s
        window = []
        for entry in reversed(self.items.values()):  # newest first; stop at the window's start
            if entry[_T] < since:
                break
            window.append(entry)
        window.reverse()

        stride = max(1, -(-len(window) // max_rows)) if max_rows else 1
        skipped: dict[tuple[str, str | None], int] = {}  # sampled-out answers per (cloud, release label)

        def group() -> dict[tuple[str, str, str | None], list[Any]]:
            groups: dict[tuple[str, str, str | None], list[Any]] = {}
            for i, entry in enumerate(window):
                if stride > 1 and i % stride and entry[_LABEL] is None and entry[_STATUS] < 500:
                    where = (entry[_CLOUD] or "-", entry[_RELEASE])
                    skipped[where] = skipped.get(where, 0) + 1
                    continue
                parsed = self.parsed(entry)
                digest = parsed[0] if parsed else None
                release = entry[_RELEASE]
                if release and digest:
                    want = self.release_model.get((entry[_CLOUD], release))
                    if want is not None and want != digest.removeprefix("sha256:"):
                        release = None  # another model answered under this label: its own group
                release = release or (digest[:12] if digest else "-")
                key = (entry[_CLOUD] or "-", release, digest)
                groups.setdefault(key, []).append((entry, parsed))
            return groups

        groups = await asyncio.to_thread(group)
        # errors (no digest) belong to the release that the same cloud answered with
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for (cloud, release, digest), members in groups.items():
            slot = merged.setdefault((cloud, release), {"digest": None, "members": [], "skipped": 0})
            slot["digest"] = slot["digest"] or digest
            slot["members"] += members
        for (cloud, label), n in skipped.items():
            # an answer's group is its release label, else its model: unparsed, the cloud's largest group
            mine = [k for k in merged if k[0] == cloud and (label is None or k[1] == label)]
            if mine:
                merged[max(mine, key=lambda k: len(merged[k]["members"]))]["skipped"] += n
        cards = {}
        for (cloud, release), slot in merged.items():
            if slot["digest"]:
                first = next(e for e, p in slot["members"] if p)
                cards[(cloud, release)] = await self.card_for(slot["digest"], first)

        def compute() -> list[dict[str, Any]]:
            out = []
            for key, slot in merged.items():
                rows = []
                for entry, parsed in slot["members"]:
                    if parsed is None:
                        rows.append(LiveRow(entry[_T], entry[_STATUS], entry[_LATENCY], None, None, None))
                        continue
                    labels = entry[_LABEL]
                    for i, pred in enumerate(parsed[1]):
                        proba = parsed[2][i] if i < len(parsed[2]) else None
                        rows.append(LiveRow(entry[_T], entry[_STATUS], entry[_LATENCY], pred, proba,
                                            labels[i] if labels else None))
                live = live_metrics(rows, cards.get(key), drift_threshold=drift_threshold, skipped_ok=slot["skipped"],
                                    evaluate=self.reports.evaluate)
                out.append({"cloud": key[0], "release": key[1], "model_digest": slot["digest"], **live})
            return out

        results = await asyncio.to_thread(compute)
        peer_drift(results, drift_threshold=drift_threshold)
        snap = {"window_s": window_s, "at": time.time(), "kept": len(self.items), "capacity": self.capacity,
                "dropped": self.dropped, "issued": self.next_n, "feedback_joined": self.feedback_joined,
                "drift_threshold": drift_threshold, "groups": results}
        self._drift_events(results)
        self.snapshot_cache = snap
        return snap

    def _drift_events(self, groups: list[dict[str, Any]]) -> None:
        now: set[tuple[str, str, str]] = set()
        for g in groups:
            for metric in g.get("drift", []):
                key = (g["cloud"], g["release"], metric)
                now.add(key)
                if key not in self._drifting:
                    self.router.events.emit("drift", g["cloud"], release=g["release"], metric=metric,
                                            value=g["metrics"][metric], requests=g["requests"])
        for cloud, release, metric in self._drifting - now:
            self.router.events.emit("drift_cleared", cloud, release=release, metric=metric)
        self._drifting = now

    async def run(self, refresh_s: float, window_s: float, drift_threshold: float) -> None:
        while True:
            await asyncio.sleep(refresh_s)
            if self.items:
                try:
                    snap = await self.snapshot(window_s, drift_threshold=drift_threshold, max_rows=_REFRESH_ROWS)
                    self.series.append({"t": snap["at"], "groups": [
                        {"cloud": g["cloud"], "release": g["release"], "requests": g["requests"],
                         "feedback": g["feedback"], **{k: g["metrics"].get(k) for k in _SERIES_METRICS}}
                        for g in snap["groups"]]})
                except Exception as exc:  # the monitor must not die; say why instead
                    self.router.events.emit("live_metrics_failed", None, error=f"{type(exc).__name__}: {exc}")


def _reply(status: int, body: dict[str, Any]) -> Reply:
    return json_reply(status, body, (b"cache-control", b"no-store"))


async def handle_feedback(router: Router, method: bytes, body: bytes) -> Reply:
    """``POST /v1/feedback``; see the module docstring. Every failure is a 4xx (or a 503 for
    a card that cannot be read now), never a 500."""
    kept = router.kept
    if method != b"POST":
        return _reply(405, {"error": "use POST /v1/feedback"})
    if kept is None:
        return _reply(404, {"error": "this router keeps no predictions (router.feedback.keep is 0)"})
    try:
        try:
            doc = json.loads(body or b"null")
        except (ValueError, RecursionError) as exc:
            raise _Problem(422, f"body is not JSON: {exc}") from None
        if isinstance(doc, dict) and "feedback" in doc:
            doc = doc["feedback"]
        items = doc if isinstance(doc, list) else [doc]
        if not items:
            raise _Problem(422, "the feedback batch is empty")
        if len(items) > _MAX_BATCH:
            raise _Problem(422, f"a feedback batch has at most {_MAX_BATCH} items, this one {len(items)}")
        return _reply(200, await kept.join(items))
    except _Problem as exc:
        return _reply(exc.status, {"error": exc.error, **exc.detail})
    except Exception as exc:  # never a 500 for feedback: a bug is reported as what it is, with 400
        return _reply(400, {"error": f"feedback could not be joined: {type(exc).__name__}: {exc}"})
