"""The evaluation report: the seeds' metrics, computed by scikit-learn's own functions
on the predictions of the exported ONNX model (what ships is what is judged)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.errors import MissingExtraError, ModelError

__all__ = ["TOP_PROBA_EDGES", "LabelledData", "evaluation_report", "flatten_metrics", "prediction_profile",
           "read_labelled_csv", "read_labelled_data"]

# Bins of the top-class probability, for drift: fine near 1, where a sound model answers.
TOP_PROBA_EDGES = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0000001)


def prediction_profile(y_pred: np.ndarray, proba: np.ndarray, classes: list[Any]) -> dict[str, Any]:
    """What the model predicts on its holdout: the reference live traffic is compared with
    (``monitoring.live``). Counts, so that a reader can weigh them by the holdout's size."""
    y_pred = np.asarray(y_pred)
    top = np.asarray(proba, dtype=np.float64).max(axis=1)
    counts, _ = np.histogram(top, bins=np.asarray(TOP_PROBA_EDGES))
    return {"n": len(y_pred),
            "class_counts": {str(c): int(np.sum(y_pred == c)) for c in classes},
            "top_proba_edges": list(TOP_PROBA_EDGES), "top_proba_counts": [int(c) for c in counts]}


def evaluation_report(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray, classes: list[Any]) -> dict[str, Any]:
    try:
        from sklearn import metrics as skm
    except ImportError as exc:
        raise MissingExtraError("scikit-learn", "train", purpose="evaluation") from exc
    labels = list(classes)
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    # The model answers in float32. scikit-learn clips log loss at the input dtype's epsilon
    # (1.2e-7 for float32), which understates the loss of confident mistakes: every metric is
    # computed on float64. Rows are renormalised there: float32 rounding leaves sums 1e-7 off,
    # which scikit-learn's float64 check (1.5e-8) would warn about.
    proba = np.asarray(proba, dtype=np.float64)
    proba = proba / proba.sum(axis=1, keepdims=True)
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    report: dict[str, Any] = {
        "n_samples": len(y_true),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "per_class": {
            str(lbl): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, lbl in enumerate(labels)
        },
    }
    for avg in ("macro", "micro", "weighted"):
        ap, ar, af, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg, zero_division=0)
        report[avg] = {"precision": float(ap), "recall": float(ar), "f1": float(af)}

    present = [lbl for lbl in labels if np.any(y_true == lbl)]
    per_class_auc: dict[str, float | None] = {}
    for i, lbl in enumerate(labels):
        positives = y_true == lbl
        per_class_auc[str(lbl)] = (
            float(skm.roc_auc_score(positives, proba[:, i])) if 0 < positives.sum() < len(y_true) else None
        )
    report["roc_auc_ovr_per_class"] = per_class_auc
    if len(present) == len(labels):
        report["roc_auc_ovr_macro"] = float(
            skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels)
        )
    else:  # sklearn refuses a macro AUC when a class has no sample; say why instead of guessing
        report["roc_auc_ovr_macro"] = None
        report["roc_auc_note"] = "classes missing from the data: " + ", ".join(
            str(lbl) for lbl in labels if lbl not in present)
    # float32 sums can exceed 1 by an ulp (tree ensembles); sklearn refuses those outright
    report["log_loss"] = float(skm.log_loss(y_true, np.clip(proba, 0.0, 1.0), labels=labels))
    report["confusion_matrix"] = {
        "labels": [str(lbl) for lbl in labels],
        "matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).astype(int).tolist(),
    }
    return report


def flatten_metrics(report: dict[str, Any]) -> dict[str, float]:
    """Names the gate understands: ``accuracy``, ``macro_f1``, ``min_class_recall``, ``class_3_f1``…"""
    flat: dict[str, float] = {"accuracy": report["accuracy"], "log_loss": report["log_loss"]}
    if report.get("roc_auc_ovr_macro") is not None:
        flat["roc_auc_ovr_macro"] = report["roc_auc_ovr_macro"]
    for avg in ("macro", "micro", "weighted"):
        for metric, value in report[avg].items():
            flat[f"{avg}_{metric}"] = value
    per_class = report["per_class"]
    for metric in ("precision", "recall", "f1"):
        values = [c[metric] for c in per_class.values() if c["support"] > 0]
        if values:
            flat[f"min_class_{metric}"] = min(values)
        for label, c in per_class.items():
            flat[f"class_{label}_{metric}"] = c[metric]
    for label, auc in report.get("roc_auc_ovr_per_class", {}).items():
        if auc is not None:
            flat[f"class_{label}_roc_auc"] = auc
    return flat


def read_labelled_csv(path: Path, *, label_column: str, n_features: int, feature_names: list[str] | None,
                      classes: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Read a CSV with one column per feature (schema order) plus the label column."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror}", hint="check the --data path") from exc
    if not rows:
        raise ModelError(f"{path} is empty", hint="the CSV needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if label_column not in header:
        raise ModelError(f"{path} has no column '{label_column}' (columns: {', '.join(header[:8])}…)",
                         hint="name the label column with --label-column")
    label_idx = header.index(label_column)
    feature_idx = [i for i in range(len(header)) if i != label_idx]
    if len(feature_idx) != n_features:
        raise ModelError(f"{path} has {len(feature_idx)} feature columns, the model expects {n_features}",
                         hint="one column per feature in the input schema's order, plus the label column")
    X = np.empty((len(rows) - 1, n_features), dtype=np.float32)
    y: list[Any] = []
    class_by_text = {str(c): c for c in classes}
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ModelError(f"{path}:{line_no} has {len(row)} fields, the header has {len(header)}")
        try:
            X[line_no - 2] = [float(row[i]) for i in feature_idx]
        except ValueError as exc:
            raise ModelError(f"{path}:{line_no} has a non-numeric feature value ({exc})") from exc
        text = row[label_idx].strip()
        if text not in class_by_text:
            # tolerate "3.0" for class 3
            try:
                text = str(int(float(text)))
            except ValueError:
                pass
        if text not in class_by_text:
            raise ModelError(f"{path}:{line_no} has label '{row[label_idx]}', which is not one of the model's classes",
                             hint=f"classes: {', '.join(class_by_text)}")
        y.append(class_by_text[text])
    if not np.all(np.isfinite(X)):
        raise ModelError(f"{path} contains NaN or infinite feature values")
    return X, np.asarray(y)


@dataclass(frozen=True)
class LabelledData:
    """Rows a bundle's model can read, with their labels as the bundle's classes."""

    arrays: list[np.ndarray]  # one per schema column
    feeds: dict[str, np.ndarray]
    y: np.ndarray
    table: Any  # the Table read (None for the reference models' positional CSVs)


def read_labelled_data(card: dict[str, Any], path: Path, *, label_column: str | None = None,
                       input_name: str | None = None) -> LabelledData:
    """Read ``path`` as the card's input schema expects it, plus the label column.

    Reference-model bundles (no ``layout`` in their schema) keep their positional CSVs.
    """
    from orchestrator.model.schema import InputSchema
    from orchestrator.model.table import read_table, split_labels

    schema_card = card["input_schema"]
    label = label_column or card.get("evaluation", {}).get("label_column") or "label"
    schema = InputSchema.from_card(card, input_name=input_name)
    if "layout" not in schema_card:
        X, labels = read_labelled_csv(path, label_column=label, n_features=int(schema_card["n_features"]),
                                      feature_names=schema_card.get("feature_names"), classes=card["classes"])
        columns = [X[:, j] for j in range(X.shape[1])]
        return LabelledData(columns, schema.feeds(columns), labels, None)
    labelled = split_labels(read_table(path), label)
    if labelled.dropped:
        first = labelled.dropped[0]
        raise ModelError(f"{path}: {first['reason']} in {first['count']} rows (line {first['rows'][0]} first)",
                         hint="evaluation needs a label on every row")
    class_by_text = {str(c): c for c in card["classes"]}
    y: list[Any] = []
    for line, value in zip(labelled.features.row_numbers, labelled.labels.tolist()):
        if str(value) not in class_by_text:
            raise ModelError(f"{path}:{line} has label '{value}', which is not one of the model's classes",
                             hint=f"classes: {', '.join(class_by_text)}")
        y.append(class_by_text[str(value)])
    arrays = schema.arrays_from_table(labelled.features)
    return LabelledData(arrays, schema.feeds(arrays), np.asarray(y), labelled.features)
