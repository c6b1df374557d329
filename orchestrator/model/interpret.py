"""Which features drive each class.

- ``top_features``: per class, the largest logistic-regression weights (on the scaled,
  one-hot encoded features the model sees), from the fitted scikit-learn pipeline;
- ``permutation_importance``: for any ONNX classifier, how much the macro F1 on the
  hold-out drops when one input column is shuffled (mean and std over repeats).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["permutation_importance", "top_features"]


def top_features(clf: Any, feature_names: list[str], classes: list[Any], *, k: int = 5) -> dict[str, Any]:
    """Per class, the ``k`` weights largest in size, with their sign."""
    per_class: dict[str, np.ndarray] = {}
    if hasattr(clf, "coef_"):
        coef = np.asarray(clf.coef_)
        if coef.shape[0] == 1 and len(classes) == 2:  # binary: one weight vector, for the second class
            per_class = {str(classes[0]): -coef[0], str(classes[1]): coef[0]}
        else:
            per_class = {str(c): coef[i] for i, c in enumerate(classes)}
    elif hasattr(clf, "estimators_") and type(clf).__name__ == "OneVsRestClassifier":
        per_class = {str(c): np.asarray(est.coef_)[0] for c, est in zip(classes, clf.estimators_)}
    else:
        return {"method": None, "note": "one-vs-one weights belong to pairs of classes, not to one class"}
    out: dict[str, list[dict[str, Any]]] = {}
    for label, weights in per_class.items():
        order = np.argsort(-np.abs(weights), kind="stable")[:k]
        out[label] = [{"feature": feature_names[j], "weight": round(float(weights[j]), 6)} for j in order]
    return {"method": "logistic regression weights on standardised and one-hot encoded features", "classes": out}


def permutation_importance(predict: Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray]],
                           feeds_of: Callable[[list[np.ndarray]], dict[str, np.ndarray]], arrays: list[np.ndarray],
                           names: list[str], y: np.ndarray, classes: list[Any], *, repeats: int = 5,
                           seed: int = 0) -> dict[str, Any]:
    """Drop in macro F1 when each column is shuffled, on the given (hold-out) rows."""
    from sklearn.metrics import f1_score

    def macro_f1(cols: list[np.ndarray]) -> float:
        labels, _ = predict(feeds_of(cols))
        return float(f1_score(y, labels, labels=classes, average="macro", zero_division=0))

    rng = np.random.default_rng(seed)
    baseline = macro_f1(arrays)
    rows: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        drops = []
        for _ in range(repeats):
            shuffled = list(arrays)
            shuffled[j] = arrays[j][rng.permutation(len(arrays[j]))]
            drops.append(baseline - macro_f1(shuffled))
        rows.append({"feature": name, "mean": round(float(np.mean(drops)), 6), "std": round(float(np.std(drops)), 6)})
    rows.sort(key=lambda r: -r["mean"])
    return {"metric": "macro_f1", "baseline": baseline, "repeats": repeats, "seed": seed, "features": rows}
