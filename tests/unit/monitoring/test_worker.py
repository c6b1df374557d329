"""The live metrics' child process: the same report as ``evaluation_report`` in-process, exactly,
over JSON; a worker that died is replaced on the next call."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.errors import MCOError
from orchestrator.model.evaluate import evaluation_report
from orchestrator.monitoring.worker import ReportWorker


def _rows(seed: int, n: int = 300, k: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(k), size=n).astype(np.float32)  # the model answers in float32
    return rng.integers(0, k, size=n), proba.argmax(axis=1), proba, list(range(k))


def test_the_worker_answers_what_the_gate_computes_and_survives_its_death() -> None:
    worker = ReportWorker()
    try:
        for seed in (1, 2):
            y_true, y_pred, proba, classes = _rows(seed)
            assert worker.evaluate(y_true, y_pred, proba, classes) == evaluation_report(y_true, y_pred, proba, classes)
        first = worker._proc
        assert first is not None
        first.kill()
        first.wait(5)
        y_true, y_pred, proba, classes = _rows(3)
        assert worker.evaluate(y_true, y_pred, proba, classes) == evaluation_report(y_true, y_pred, proba, classes)
        assert worker._proc is not first
        with pytest.raises(MCOError, match="refused the rows"):
            worker.evaluate([0, 1], [0], [[0.5, 0.5]], [0, 1])  # lengths that differ: refused, not a crash
        y_true, y_pred, proba, classes = _rows(4, k=3)
        assert worker.evaluate(y_true, y_pred, proba, classes)["n_samples"] == 300  # and it goes on
    finally:
        worker.close()
    assert worker._proc is None
