"""Labelled traffic: predict requests whose true labels are known, and their feedback.

A thread sends one row of a labelled dataset per request at a steady rate through the
router, reads ``x-mco-request-id``, and posts the true label to ``/v1/feedback`` (in
small batches, as a labelling pipeline would). Every answer is recorded with the cloud
and model digest that served it and whether it was right, so a drill can count the bad
answers clients saw. Used by the silent-bad-model drill, its tests and the benchmarks.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

__all__ = ["LabelledAnswer", "LabelledTraffic"]


@dataclass(frozen=True)
class LabelledAnswer:
    sent: float
    status: int
    cloud: str | None
    digest: str | None
    predicted: Any | None
    label: Any
    request_id: str | None
    detail: str | None = None  # the start of a failed answer's body

    @property
    def correct(self) -> bool:
        return self.status == 200 and str(self.predicted) == str(self.label)


class LabelledTraffic:
    def __init__(self, url: str, X: np.ndarray, y: np.ndarray, *, rate: float = 50.0, feedback_batch: int = 10,
                 seed: int = 0) -> None:
        self.url = url.rstrip("/")
        self.X, self.y = X, y
        self.rate = rate
        self.batch = feedback_batch
        self.rng = np.random.default_rng(seed)
        self.answers: list[LabelledAnswer] = []
        self.feedback_errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labelled-traffic", daemon=True)

    def start(self) -> LabelledTraffic:
        self._thread.start()
        return self

    def stop(self) -> list[LabelledAnswer]:
        self._stop.set()
        self._thread.join(30)
        return list(self.answers)

    def __enter__(self) -> LabelledTraffic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        pending: list[dict[str, Any]] = []
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        with httpx.Client(timeout=5.0) as client:
            while not self._stop.is_set():
                i = int(self.rng.integers(len(self.y)))
                label = self.y[i].item()
                sent = time.time()
                try:
                    resp = client.post(self.url + "/v1/predict", json={"instances": [self.X[i].tolist()]})
                    doc = resp.json() if resp.status_code == 200 else {}
                    rid = resp.headers.get("x-mco-request-id")
                    self.answers.append(LabelledAnswer(sent, resp.status_code, resp.headers.get("x-mco-cloud"),
                                                       doc.get("model_digest"), (doc.get("predictions") or [None])[0],
                                                       label, rid, None if resp.status_code == 200 else
                                                       resp.text[:160]))
                    if rid and resp.status_code == 200:
                        pending.append({"request_id": rid, "label": label})
                except (httpx.HTTPError, ValueError) as exc:
                    self.answers.append(LabelledAnswer(sent, 0, None, None, None, label, None))
                    self.feedback_errors.append(f"predict: {type(exc).__name__}")
                if len(pending) >= self.batch:
                    self._send(client, pending)
                    pending = []
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_at = time.monotonic()
            if pending:
                self._send(client, pending)

    def _send(self, client: httpx.Client, items: list[dict[str, Any]]) -> None:
        try:
            resp = client.post(self.url + "/v1/feedback", json=items)
            if resp.status_code != 200:
                self.feedback_errors.append(f"feedback: HTTP {resp.status_code} {resp.text[:120]}")
        except httpx.HTTPError as exc:
            self.feedback_errors.append(f"feedback: {type(exc).__name__}")
