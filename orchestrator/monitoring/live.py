"""Live metrics of one cloud/release from the predictions the router kept.

    live_metrics(rows, card, window_s=…)   error rate, p50/p95/p99, class distribution,
                                           PSI drift against the card's holdout predictions,
                                           and the gate's metrics on the labelled rows

Drift is the **population stability index** (PSI) of the predicted-class distribution and
of the top-class probability (binned) against the card's holdout predictions
(``evaluation.holdout_predictions``; older cards: the column sums of the holdout confusion
matrix, which are the same class counts, and no probability baseline). PSI rather than
chi-square: its size does not grow with the traffic, so one threshold (0.1 small, 0.2 a
real shift: the usual reading) means the same at 50 and at 50,000 answers, whereas a
chi-square p-value on a busy router calls every trivial difference significant.

The quality metrics are ``model.evaluate.evaluation_report`` on the (prediction, label,
probabilities) triples that feedback joined, flattened by ``flatten_metrics`` and prefixed
``live_``: the gate's numbers, from the gate's code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.model.evaluate import TOP_PROBA_EDGES, evaluation_report, flatten_metrics
from orchestrator.monitoring.rules import PEER_METRICS

__all__ = ["Baseline", "LiveRow", "live_metrics", "peer_drift", "psi"]

_EPS = 1e-4  # a bin empty on one side counts as this share: PSI stays finite and an empty bin still weighs


@dataclass(frozen=True)
class LiveRow:
    """One kept answer, parsed: what the metrics read."""

    t: float
    status: int
    latency_s: float
    predicted: Any | None        # the predicted class (None: no prediction in the answer)
    proba: Sequence[float] | None
    label: Any | None            # joined feedback, as one of the card's classes


def psi(expected: Sequence[float], actual: Sequence[float]) -> float | None:
    """PSI between two histograms over the same bins (counts or shares); None when either is empty."""
    e_total, a_total = float(sum(expected)), float(sum(actual))
    if e_total <= 0 or a_total <= 0:
        return None
    value = 0.0
    for e, a in zip(expected, actual):
        pe = max(e / e_total, _EPS)
        pa = max(a / a_total, _EPS)
        value += (pa - pe) * math.log(pa / pe)
    return value


@dataclass(frozen=True)
class Baseline:
    classes: list[Any]
    class_counts: list[float]           # in ``classes`` order
    top_proba_counts: list[float] | None  # over TOP_PROBA_EDGES

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> Baseline:
        classes = list(card["classes"])
        evaluation = card.get("evaluation", {})
        profile = evaluation.get("holdout_predictions")
        if profile is not None:
            counts = [float(profile["class_counts"].get(str(c), 0)) for c in classes]
            top = profile.get("top_proba_counts")
            same_bins = list(profile.get("top_proba_edges", [])) == list(TOP_PROBA_EDGES)
            return cls(classes, counts, [float(x) for x in top] if top and same_bins else None)
        matrix = evaluation.get("report", {}).get("confusion_matrix", {}).get("matrix")
        counts = [float(sum(col)) for col in zip(*matrix)] if matrix else [1.0] * len(classes)
        return cls(classes, counts, None)


def _percentile_ms(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(np.asarray(values), q)) * 1000, 3)


def live_metrics(rows: Sequence[LiveRow], card: dict[str, Any] | None, *, drift_threshold: float = 0.2,
                 skipped_ok: int = 0, evaluate: Callable[..., dict[str, Any]] = evaluation_report) -> dict[str, Any]:
    """The live figures of ``rows`` (one cloud/release, one window); see the module docstring.
    ``skipped_ok``: successful answers left out of ``rows`` by sampling (counted, not measured).
    ``evaluate``: ``evaluation_report`` here, or the router's ``ReportWorker.evaluate`` (the same
    function in a child process, so the router never imports scikit-learn)."""
    n = len(rows) + skipped_ok
    errors = sum(1 for r in rows if r.status >= 500)
    latencies = [r.latency_s for r in rows if r.status < 500]
    metrics: dict[str, float | None] = {
        "requests": float(n), "error_rate": (errors / n) if n else None,
        "p50_ms": _percentile_ms(latencies, 50), "p95_ms": _percentile_ms(latencies, 95),
        "p99_ms": _percentile_ms(latencies, 99),
    }
    out: dict[str, Any] = {"requests": n, "errors": errors, "metrics": metrics, "feedback": 0}
    predicted = [r for r in rows if r.predicted is not None]
    if card is None or not predicted:
        metrics.update({"class_drift_psi": None, "proba_drift_psi": None})
        return out
    base = Baseline.from_card(card)
    index = {str(c): i for i, c in enumerate(base.classes)}
    counts = [0.0] * len(base.classes)
    for r in predicted:
        i = index.get(str(r.predicted))
        if i is not None:
            counts[i] += 1
    out["class_distribution"] = {str(c): counts[i] / len(predicted) for i, c in enumerate(base.classes)}
    total = sum(base.class_counts) or 1.0
    out["training_distribution"] = {str(c): base.class_counts[i] / total for i, c in enumerate(base.classes)}
    metrics["class_drift_psi"] = psi(base.class_counts, counts)
    out["class_counts"] = counts  # in the card's class order: what peer_drift compares
    tops = [max(r.proba) for r in predicted if r.proba]
    top_counts = [float(h) for h in np.histogram(np.asarray(tops), bins=np.asarray(TOP_PROBA_EDGES))[0]] \
        if tops else None
    out["top_proba_counts"] = top_counts
    metrics["proba_drift_psi"] = psi(base.top_proba_counts, top_counts) \
        if base.top_proba_counts is not None and top_counts else None
    out["mean_top_proba"] = float(np.mean(tops)) if tops else None
    drift = [k for k in ("class_drift_psi", "proba_drift_psi") if (metrics[k] or 0.0) > drift_threshold]
    metrics.update(dict.fromkeys(PEER_METRICS))  # set by peer_drift, which sees every group of the window
    out["drift"] = drift
    labelled = [r for r in predicted if r.label is not None and r.proba]
    out["feedback"] = len(labelled)
    metrics["feedback"] = float(len(labelled))
    if labelled:
        classes = base.classes
        by_text = {str(c): c for c in classes}
        y_true = np.asarray([by_text[str(r.label)] for r in labelled])
        y_pred = np.asarray([by_text.get(str(r.predicted), r.predicted) for r in labelled])
        proba = np.asarray([list(r.proba or ()) for r in labelled], dtype=np.float64)
        report = evaluate(y_true, y_pred, proba, classes)
        out["report"] = {k: report[k] for k in ("accuracy", "macro", "per_class", "confusion_matrix")}
        metrics.update({f"live_{k}": v for k, v in flatten_metrics(report).items()})
    return out


def peer_drift(groups: list[dict[str, Any]], *, drift_threshold: float = 0.2) -> None:
    """Set each group's ``peer_*`` drift: its predicted classes and top-class probabilities
    against those of the *other clouds serving another release* in the same window (during a
    waves deploy, the previous release on the clouds not yet changed), summed. Same traffic,
    same time: what differs is the model, so a shift the holdout comparison blames on the
    traffic shows here only if the new release answers differently. None (and ``peers``
    empty) when no other cloud serves another release, e.g. once every cloud has it.
    A group is one ``live_metrics`` output plus its ``cloud`` and ``release``; in place."""
    for g in groups:
        peers = [p for p in groups if p is not g and p.get("cloud") != g.get("cloud")
                 and p.get("release") != g.get("release") and p.get("class_counts")
                 and len(p["class_counts"]) == len(g.get("class_counts") or ())]
        g["peers"] = [{"cloud": p["cloud"], "release": p["release"]} for p in peers]
        metrics = g.setdefault("metrics", {})
        if not peers or not g.get("class_counts"):
            metrics.update(dict.fromkeys(PEER_METRICS))
            g["peer_requests"] = 0
            continue
        summed = [sum(col) for col in zip(*(p["class_counts"] for p in peers))]
        g["peer_requests"] = int(sum(summed))
        metrics["peer_class_drift_psi"] = psi(summed, g["class_counts"])
        tops = [p["top_proba_counts"] for p in peers if p.get("top_proba_counts")]
        metrics["peer_proba_drift_psi"] = psi([sum(col) for col in zip(*tops)], g["top_proba_counts"]) \
            if tops and g.get("top_proba_counts") else None
        over = [k for k in PEER_METRICS if (metrics[k] or 0.0) > drift_threshold]
        g["drift"] = [*(k for k in g.get("drift", []) if k not in PEER_METRICS), *over]
