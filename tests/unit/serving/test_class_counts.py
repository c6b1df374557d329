"""Predicted rows per class: one numpy update per request, exported as a Prometheus counter."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from orchestrator.serving.app import ClassCounts


def _exported(counts: ClassCounts) -> str:
    registry = CollectorRegistry()
    registry.register(counts)
    return generate_latest(registry).decode()


def test_integer_classes_count_a_batch_in_one_update():
    counts = ClassCounts([0, 1, 2, 10])
    counts.add(np.array([10, 0, 10, 2, 10], dtype=np.int64))
    counts.add(np.array([1], dtype=np.int64))
    text = _exported(counts)
    for label, n in (("0", 1), ("1", 1), ("2", 1), ("10", 3)):
        assert f'mco_model_predictions_total{{label="{label}"}} {float(n)}' in text


def test_string_classes_and_a_label_the_card_does_not_list():
    counts = ClassCounts(["silver", "bronze", "gold"])
    counts.add(np.array(["gold", "gold", "bronze", "platinum"], dtype=object))
    text = _exported(counts)
    assert 'mco_model_predictions_total{label="gold"} 2.0' in text
    assert 'mco_model_predictions_total{label="bronze"} 1.0' in text
    assert 'mco_model_predictions_total{label="silver"} 0.0' in text
    assert "platinum" not in text
