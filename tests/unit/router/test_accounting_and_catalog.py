from __future__ import annotations

import json
import random

import pytest

from orchestrator.catalog import catalog_keys, egress_cost, hourly_compute_cost, load_catalog, price
from orchestrator.errors import ConfigError
from orchestrator.router.accounting import CostModel, TargetStats, percentile
from orchestrator.router.retries import RetryBudget, backoff


def test_histogram_percentiles_are_within_a_bucket_of_the_truth():
    rng = random.Random(7)
    values = [rng.lognormvariate(-6, 0.8) for _ in range(20_000)]  # around 2.5 ms
    stats = TargetStats()
    for v in values:
        stats.observe(v, 100)
    values.sort()
    for q in (0.5, 0.95, 0.99):
        truth = values[int(q * len(values))]
        assert percentile(stats.counts, q) == pytest.approx(truth, rel=0.06)
    assert stats.requests == 20_000 and stats.bytes_out == 2_000_000
    assert percentile(TargetStats().counts, 0.5) is None


def test_errors_count_by_kind_and_pull_the_ewma_up():
    stats = TargetStats()
    for _ in range(10):
        stats.observe(0.001, 10)
    before = stats.ewma_s
    stats.error("timeout", 0.5)
    assert stats.errors == {"connect": 0, "timeout": 1, "reset": 0, "http_5xx": 0}
    assert stats.ewma_s > before * 10


def test_every_catalog_entry_has_prices_a_source_and_a_date():
    raw = json.loads((__import__("orchestrator.catalog").catalog._default_path()).read_text())
    assert set(raw["entries"]) == set(catalog_keys())
    for key, entry in load_catalog().items():
        assert entry.source and entry.date[:2] == "20", key
        assert entry.vcpu_hour >= 0 and entry.gb_hour >= 0 and entry.egress_gb >= 0
    for provider in ("aws/", "gcp/", "azure/"):
        assert any(k.startswith(provider) and load_catalog()[k].vcpu_hour > 0 for k in catalog_keys())
    assert price("local").vcpu_hour == 0


def test_cost_per_hour_and_per_thousand_requests():
    hourly = hourly_compute_cost("aws/us-east-1", vcpu=0.5, memory_gb=1.0, replicas=2)
    assert hourly == pytest.approx(2 * (0.5 * 0.04048 + 1.0 * 0.004445))
    assert egress_cost("aws/us-east-1", 1e9) == pytest.approx(0.09)
    model = CostModel.for_target("aws/us-east-1", vcpu=0.5, memory_gb=1.0, replicas=2)
    # 100 req/s of 1 kB answers: 0.36 GB/h of egress on top of the replicas
    assert model.per_hour(100_000) == pytest.approx(hourly + 0.36 * 0.09)
    assert model.per_1k_requests(100, 100_000) == pytest.approx(model.per_hour(100_000) / 360)
    assert model.per_1k_requests(0, 0) is None
    assert CostModel.for_target(None, vcpu=1, memory_gb=1, replicas=1).per_hour(0) is None


def test_unknown_pricing_key_names_the_known_ones():
    with pytest.raises(ConfigError) as err:
        price("aws/mars-1")
    assert "aws/us-east-1" in str(err.value)


def test_retry_budget_allows_the_ratio_plus_the_floor_and_no_more():
    budget = RetryBudget(ratio=0.2, min_per_s=1.0, window_s=10)
    for _ in range(100):
        budget.request()
    granted = sum(budget.try_acquire() for _ in range(100))
    assert granted == 30  # 20 % of 100 requests + 1/s over 10 s
    assert budget.denied == 70
    assert budget.snapshot()["retries_in_window"] == 30


def test_backoff_is_jittered_and_capped():
    rng = random.Random(1)
    waits = [backoff(3, base_s=0.002, max_s=0.005, rng=rng) for _ in range(200)]
    assert all(0 <= w <= 0.005 for w in waits) and len(set(waits)) > 100
