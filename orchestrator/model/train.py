"""Train the reference model: multiclass logistic regression in three strategies.

- ``multinomial``: one softmax model over all classes;
- ``ovr``: one binary logistic regression per class against the rest;
- ``ovo``: one per pair of classes, decided by votes.

The fitted pipeline is exported to ONNX, evaluated *as ONNX* on a stratified hold-out
split, and written as a bundle. Nothing is pickled.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator import __version__
from orchestrator.errors import MissingExtraError, ModelError
from orchestrator.model.bundle import MODEL_FILE, Bundle, load_bundle, staged_bundle, write_card
from orchestrator.model.datasets import load_dataset, make_imbalanced
from orchestrator.model.evaluate import evaluation_report, prediction_profile
from orchestrator.model.export import OnnxModel, export_onnx
from orchestrator.model.plots import write_evaluation_plots

__all__ = ["HOLDOUT_FILE", "STRATEGIES", "TrainSpec", "classifier", "train_bundle"]

STRATEGIES = ("multinomial", "ovr", "ovo")
HOLDOUT_FILE = "data/holdout.csv"


@dataclass(frozen=True)
class TrainSpec:
    dataset: str = "digits"
    strategy: str = "multinomial"
    seed: int = 42
    test_size: float = 0.25
    class_weight: bool = False
    imbalance: float | None = None
    max_iter: int = 2000
    name: str | None = None
    version: str = "1"
    # A training bug on purpose (the silent-bad-model drill): the labels are permuted with this
    # seed before the split, so the card's own evaluation looks as good as a sound model's.
    permute_labels: int | None = None


def classifier(strategy: str, *, class_weight: bool, max_iter: int, seed: int) -> Any:
    """The logistic regression in one of the three multiclass strategies (unfitted)."""
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsOneClassifier, OneVsRestClassifier
    except ImportError as exc:
        raise MissingExtraError("scikit-learn", "train", purpose="training") from exc
    base = LogisticRegression(max_iter=max_iter, class_weight="balanced" if class_weight else None,
                              random_state=seed)
    if strategy == "multinomial":
        return base  # lbfgs fits a multinomial (softmax) model for multiclass targets
    if strategy == "ovr":
        return OneVsRestClassifier(base)
    if strategy == "ovo":
        return OneVsOneClassifier(base)
    raise ModelError(f"unknown strategy '{strategy}'", hint=f"choose one of: {', '.join(STRATEGIES)}")


def _estimator(spec: TrainSpec) -> Any:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), classifier(spec.strategy, class_weight=spec.class_weight,
                                                      max_iter=spec.max_iter, seed=spec.seed))


def train_bundle(spec: TrainSpec, out: Path) -> Bundle:
    """Train, export, evaluate and write a bundle to ``out`` (replaced atomically)."""
    from sklearn.model_selection import train_test_split

    ds = load_dataset(spec.dataset)
    if spec.imbalance is not None:
        ds = make_imbalanced(ds, ratio=spec.imbalance, seed=spec.seed)
    if spec.permute_labels is not None:
        ds = _permuted(ds, spec.permute_labels)
    X_train, X_test, y_train, y_test = train_test_split(
        ds.X, ds.y, test_size=spec.test_size, random_state=spec.seed, stratify=ds.y)
    pipeline = _estimator(spec).fit(X_train, y_train)
    name = spec.name or f"{spec.dataset}-{spec.strategy}"
    model_bytes, probability_kind = export_onnx(pipeline, X_train, strategy=spec.strategy, name=name)

    onnx_model = OnnxModel(model_bytes)
    y_pred, proba = onnx_model.predict(X_test)
    classes = [int(c) for c in pipeline.classes_]
    report = evaluation_report(y_test, y_pred, proba, classes)

    with staged_bundle(Path(out)) as staging:
        (staging / MODEL_FILE).write_bytes(model_bytes)
        write_evaluation_plots(staging / "plots", report, y_test, proba, classes)
        _write_holdout(staging / HOLDOUT_FILE, X_test, y_test, ds.feature_names)
        card: dict[str, Any] = {
            "schema": "mco.model-card/v1",
            "name": name,
            "version": spec.version,
            "strategy": spec.strategy,
            "classes": classes,
            "input_schema": {"n_features": int(ds.X.shape[1]), "dtype": "float32",
                             "feature_names": ds.feature_names},
            "training_data": {
                "dataset": spec.dataset, "description": ds.description, "seed": spec.seed,
                "test_size": spec.test_size, "split": "stratified", "n_train": len(y_train),
                "n_test": len(y_test), "imbalance_ratio": spec.imbalance,
                "class_weight": "balanced" if spec.class_weight else None,
                "class_counts": {str(c): int((ds.y == c).sum()) for c in classes},
            },
            "model": {"format": "onnx", "opset": 17, "outputs": ["label", "probabilities"],
                      "probabilities": probability_kind, "input_name": onnx_model.input_name},
            "evaluation": {"data": HOLDOUT_FILE, "report": report,
                           "holdout_predictions": prediction_profile(y_pred, proba, classes)},
            "mco_version": __version__,
        }
        if spec.permute_labels is not None:  # said in the card: a drill's bad model is no secret
            card["training_data"]["permute_labels_seed"] = spec.permute_labels
        write_card(staging, card)
    return load_bundle(out)


def _permuted(ds: Any, seed: int) -> Any:
    """``ds`` with every class renamed to another one (a derangement): same data, wrong names."""
    from dataclasses import replace as dc_replace

    classes = np.unique(ds.y)
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(classes))
        if not np.any(order == np.arange(len(classes))):
            break
    mapping = dict(zip(classes.tolist(), classes[order].tolist()))
    return dc_replace(ds, y=np.asarray([mapping[v] for v in ds.y.tolist()], dtype=ds.y.dtype))


def _write_holdout(path: Path, X: np.ndarray, y: np.ndarray, feature_names: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([*feature_names, "label"])
        for row, label in zip(X, y):
            writer.writerow([repr(float(v)) for v in row] + [int(label)])
