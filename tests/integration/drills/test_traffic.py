"""The drill traffic generator against a real model server: steady rate, every answer recorded."""

from __future__ import annotations

import time

from orchestrator.local.runtime import LocalRuntime
from orchestrator.model.bundle import Bundle
from orchestrator.net import free_port
from orchestrator.testing.traffic import TrafficConfig, TrafficGenerator, predict_body


def test_steady_rate_and_records_against_a_model_server(local_runtime: LocalRuntime, digits_bundle: Bundle) -> None:
    url = local_runtime.target("aws").url + "/v1/predict"
    gen = TrafficGenerator(TrafficConfig(url=url, rate=200, body=predict_body(64)))
    gen.start()
    time.sleep(2.0)
    records = gen.stop()
    assert 360 <= len(records) <= 420, len(records)
    assert all(r.ok for r in records), {r.error for r in records if not r.ok}
    assert {r.digest for r in records} == {digits_bundle.digest}
    gaps = [b.sent - a.sent for a, b in zip(records, sorted(records, key=lambda r: r.sent)[1:])]
    assert gen.started_at is not None and records[0].sent >= gen.started_at
    assert max(abs(g) for g in gaps) < 1.0  # no stall in the schedule


def test_a_dead_endpoint_is_recorded_as_client_errors_not_raised() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/predict"
    gen = TrafficGenerator(TrafficConfig(url=url, rate=50, body=predict_body(64)))
    gen.start()
    time.sleep(0.5)
    records = gen.stop()
    assert len(records) >= 15
    assert all(r.status == 0 and r.error == "connect refused" and r.cloud is None for r in records)
