"""The report's numbers equal scikit-learn's own metric functions on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from orchestrator.model.evaluate import evaluation_report, flatten_metrics, read_labelled_csv
from orchestrator.model.export import OnnxModel


@pytest.mark.parametrize("strategy", ["multinomial", "ovr", "ovo"])
def test_report_matches_sklearn_on_wine(bundle_factory, strategy):
    bundle = bundle_factory(dataset="wine", strategy=strategy)
    card = bundle.card
    X, y = read_labelled_csv(bundle.path / card["evaluation"]["data"], label_column="label",
                             n_features=card["input_schema"]["n_features"], feature_names=None,
                             classes=card["classes"])
    labels, proba = OnnxModel(bundle.model_path.read_bytes()).predict(X)
    report = evaluation_report(y, labels, proba, card["classes"])

    assert report == card["evaluation"]["report"], "the card holds the report of the shipped ONNX model"
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y, labels))
    for avg in ("macro", "micro", "weighted"):
        assert report[avg]["f1"] == pytest.approx(skm.f1_score(y, labels, average=avg))
        assert report[avg]["precision"] == pytest.approx(skm.precision_score(y, labels, average=avg))
        assert report[avg]["recall"] == pytest.approx(skm.recall_score(y, labels, average=avg))
    per_class_f1 = skm.f1_score(y, labels, average=None, labels=card["classes"])
    for i, label in enumerate(card["classes"]):
        assert report["per_class"][str(label)]["f1"] == pytest.approx(per_class_f1[i])
        assert report["per_class"][str(label)]["support"] == int((y == label).sum())
    assert report["roc_auc_ovr_macro"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert report["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=card["classes"]))
    assert report["confusion_matrix"]["matrix"] == skm.confusion_matrix(y, labels).tolist()
    # probabilities are a distribution for every strategy, ovo included (softmax of votes)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_micro_average_equals_accuracy_and_min_class_recall(digits_bundle):
    report = digits_bundle.card["evaluation"]["report"]
    flat = flatten_metrics(report)
    assert flat["micro_f1"] == pytest.approx(report["accuracy"])
    assert flat["min_class_recall"] == min(c["recall"] for c in report["per_class"].values())


def test_missing_class_gives_no_macro_auc_and_says_why():
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1]])
    report = evaluation_report(y, np.array([0, 0, 1, 1]), proba, [0, 1, 2])
    assert report["roc_auc_ovr_macro"] is None
    assert "2" in report["roc_auc_note"]
    assert report["per_class"]["2"]["support"] == 0


def test_class_weighting_helps_the_rare_class(bundle_factory):
    plain = bundle_factory(dataset="digits", strategy="multinomial", imbalance=0.55, test_size=0.4)
    weighted = bundle_factory(dataset="digits", strategy="multinomial", imbalance=0.55, test_size=0.4,
                              class_weight=True)
    counts = plain.card["training_data"]["class_counts"]
    assert counts["9"] <= counts["0"] / 10, "the imbalance flag makes the last class rare"
    assert weighted.card["training_data"]["class_weight"] == "balanced"
    rare = lambda b: b.card["evaluation"]["report"]["per_class"]["9"]["recall"]  # noqa: E731
    assert rare(weighted) >= rare(plain)


def test_log_loss_is_computed_on_float64_so_confident_mistakes_count_in_full():
    # The model's probabilities are float32; a confident mistake gives the true class 1e-10.
    y = np.array([0, 1, 2, 0])
    proba = np.array([[1e-10, 1 - 2e-10, 1e-10], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.7, 0.2, 0.1]],
                     dtype=np.float32)
    report = evaluation_report(y, np.array([1, 1, 2, 0]), proba, [0, 1, 2])
    as64 = proba.astype(np.float64)
    expected = skm.log_loss(y, as64 / as64.sum(axis=1, keepdims=True), labels=[0, 1, 2])
    assert report["log_loss"] == pytest.approx(expected)
    # float32 clipping (at 1.2e-7) would understate it by (23.0 - 15.9) / 4, about 1.8
    assert report["log_loss"] > skm.log_loss(y, proba, labels=[0, 1, 2]) + 1.0
