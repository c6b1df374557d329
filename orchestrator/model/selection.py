"""Model selection on the training part only: stratified K-fold CV and hyperparameter search.

The hold-out split is made before anything here runs and is never passed in, so the
final evaluation judges a model that has not seen it, directly or through a choice.

A search space is text, e.g. ``C=0.01,0.1,1,10`` (a list: a grid, or sampled from with
``--search-random N``) or ``C=0.001..100`` (a log-uniform range, random search only).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.errors import ModelError
from orchestrator.model.evaluate import evaluation_report, flatten_metrics

__all__ = [
    "CV_METRICS",
    "LOWER_IS_BETTER",
    "SearchSpace",
    "candidates",
    "cross_validate",
    "parse_search",
    "search",
]

# What each fold records; a search metric is one of these.
CV_METRICS = ("accuracy", "macro_f1", "macro_precision", "macro_recall", "weighted_f1", "min_class_recall",
              "roc_auc_ovr_macro", "log_loss")
LOWER_IS_BETTER = frozenset({"log_loss"})

Fit = Callable[[dict[str, Any], np.ndarray], Any]  # (params, train row indices) -> fitted model


@dataclass(frozen=True)
class SearchSpace:
    """``values``: param -> list of values, or ("loguniform", lo, hi) for random search."""

    values: dict[str, list[Any] | tuple[str, float, float]]
    text: list[str]

    def as_card(self) -> dict[str, Any]:
        return {name: (list(v) if isinstance(v, list) else {"loguniform": [v[1], v[2]]})
                for name, v in self.values.items()}


def _value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    try:
        number = float(text)
    except ValueError:
        return text.strip()
    return int(number) if number.is_integer() and "." not in text and "e" not in low else number


def parse_search(texts: list[str], *, allowed: set[str]) -> SearchSpace:
    """``["C=0.1,1,10; class_weight=balanced,none"]`` -> a space over estimator parameters."""
    values: dict[str, list[Any] | tuple[str, float, float]] = {}
    for text in texts:
        for part in (p for p in text.split(";") if p.strip()):
            name, sep, rest = part.partition("=")
            name = name.strip()
            if not sep or not name or not rest.strip():
                raise ModelError(f"cannot read search space '{part.strip()}'",
                                 hint='write PARAM=V1,V2,… (e.g. "C=0.01,0.1,1,10") or PARAM=LO..HI for random search')
            if name not in allowed:
                raise ModelError(f"'{name}' is not a parameter of the model",
                                 hint=f"parameters: {', '.join(sorted(allowed))}")
            if ".." in rest:
                lo_text, _, hi_text = rest.partition("..")
                try:
                    lo, hi = float(lo_text), float(hi_text)
                except ValueError:
                    raise ModelError(f"cannot read range '{rest.strip()}' for {name}",
                                     hint="write LO..HI with positive numbers, e.g. C=0.001..100") from None
                if not 0 < lo < hi:
                    raise ModelError(f"range {rest.strip()} for {name} needs 0 < LO < HI (it is log-uniform)")
                values[name] = ("loguniform", lo, hi)
            else:
                values[name] = [_value(v) for v in rest.split(",") if v.strip()]
    if not values:
        raise ModelError("the search space is empty", hint='e.g. --search "C=0.01,0.1,1,10"')
    return SearchSpace(values, list(texts))


def candidates(space: SearchSpace, *, random_n: int | None, seed: int) -> list[dict[str, Any]]:
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    ranges = [k for k, v in space.values.items() if isinstance(v, tuple)]
    if random_n is None:
        if ranges:
            raise ModelError(f"'{ranges[0]}' is a range; a grid needs a list of values",
                             hint="list the values, or sample the range with --search-random N")
        return [dict(p) for p in ParameterGrid(space.values)]
    if random_n < 1:
        raise ModelError("--search-random needs N >= 1")
    dists: dict[str, Any] = {}
    for k, v in space.values.items():
        if isinstance(v, tuple):
            from scipy.stats import loguniform

            dists[k] = loguniform(v[1], v[2])
        else:
            dists[k] = v
    if not ranges:  # a finite grid: sample without replacement, at most all of it
        random_n = min(random_n, len(ParameterGrid(space.values)))
    return [{k: (float(v) if isinstance(v, np.floating) else v) for k, v in p.items()}
            for p in ParameterSampler(dists, n_iter=random_n, random_state=seed)]


def _fold_metrics(model: Any, X: Any, y: np.ndarray, classes: list[Any]) -> dict[str, float | None]:
    proba = model.predict_proba(X)
    report = evaluation_report(y, model.predict(X), proba, classes)
    flat = flatten_metrics(report)
    return {m: (float(flat[m]) if m in flat else None) for m in CV_METRICS}


def cross_validate(fit: Fit, params: dict[str, Any], X: Any, y: np.ndarray, classes: list[Any], *,
                   folds: int, seed: int, take: Callable[[Any, np.ndarray], Any]) -> dict[str, Any]:
    """Stratified K-fold on ``X``/``y`` (the training part); each fold's metrics, their mean and std."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    rows: list[dict[str, Any]] = []
    for k, (train_idx, val_idx) in enumerate(splitter.split(np.zeros(len(y)), y)):
        model = fit(params, train_idx)
        rows.append({"fold": k + 1, "n_train": len(train_idx), "n_validate": len(val_idx),
                     **_fold_metrics(model, take(X, val_idx), y[val_idx], classes)})
    summary: dict[str, dict[str, float]] = {}
    for m in CV_METRICS:
        values = [float(r[m]) for r in rows if r[m] is not None]
        if values:
            summary[m] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
    return {"folds": folds, "stratified": True, "seed": seed, "per_fold": rows, "summary": summary}


def search(fit: Fit, space: SearchSpace, X: Any, y: np.ndarray, classes: list[Any], *, folds: int, seed: int,
           metric: str, random_n: int | None, take: Callable[[Any, np.ndarray], Any],
           progress: Callable[[int, int], None] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every candidate by CV; returns (card section, the chosen candidate's CV)."""
    if metric not in CV_METRICS:
        raise ModelError(f"unknown search metric '{metric}'", hint=f"choose one of: {', '.join(CV_METRICS)}")
    cands = candidates(space, random_n=random_n, seed=seed)
    results: list[dict[str, Any]] = []
    cvs: list[dict[str, Any]] = []
    for i, params in enumerate(cands):
        if progress:
            progress(i, len(cands))
        cv = cross_validate(fit, params, X, y, classes, folds=folds, seed=seed, take=take)
        score = cv["summary"].get(metric)
        results.append({"params": params, "mean": score["mean"] if score else None,
                        "std": score["std"] if score else None})
        cvs.append(cv)
    scored = [i for i, r in enumerate(results) if r["mean"] is not None and math.isfinite(r["mean"])]
    if not scored:
        raise ModelError(f"no candidate has a {metric} score", hint="choose another --search-metric")
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    # ties go to the first candidate (grid order): a deterministic choice
    best = max(scored, key=lambda i: (sign * results[i]["mean"], -i))
    section = {"mode": "random" if random_n is not None else "grid", "n_candidates": len(cands),
               "random_n": random_n, "space": space.as_card(), "metric": metric,
               "greater_is_better": metric not in LOWER_IS_BETTER, "folds": folds,
               "candidates": results, "chosen": results[best]["params"], "chosen_score": results[best]["mean"]}
    return section, cvs[best]
