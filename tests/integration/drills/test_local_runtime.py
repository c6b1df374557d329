"""The embedded local runtime: real model server processes, a real filesystem store, real signals."""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

import httpx
import pytest

from orchestrator.drills.fleet import LocalFleet
from orchestrator.drills.scenarios import variant_bundle
from orchestrator.local.runtime import LocalRuntime
from orchestrator.model.bundle import Bundle, load_bundle
from orchestrator.net import port_open

ROW = {"instances": [[float(i % 16) for i in range(64)]]}


def predict(url: str) -> dict:
    resp = httpx.post(f"{url}/v1/predict", json=ROW, timeout=5)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_every_cloud_serves_the_bundle_from_its_own_store(local_runtime: LocalRuntime, digits_bundle: Bundle) -> None:
    targets = local_runtime.targets()
    assert [t.cloud for t in targets] == ["aws", "gcp", "azure"]
    assert len({t.port for t in targets}) == 3
    for t in targets:
        assert predict(t.url)["model_digest"] == digits_bundle.digest
        stored = local_runtime.bundle_dir(t.cloud, digits_bundle.digest)
        assert load_bundle(stored).digest == digits_bundle.digest  # verifies every file
    # content-addressed: pushing the same bundle again copies nothing
    again = local_runtime.push(digits_bundle)
    assert all(r["ok"] and r["copied"] is False for r in again.values())


def test_kill_refuses_connections_and_repair_serves_on_the_same_port(local_runtime: LocalRuntime) -> None:
    aws = local_runtime.target("aws")
    old_pid = local_runtime.kill("aws")
    assert local_runtime.pid("aws") is None
    assert not port_open("127.0.0.1", aws.port)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{aws.url}/readyz", timeout=2)
    assert predict(local_runtime.target("gcp").url)  # the others are untouched
    new_pid = local_runtime.repair("aws")
    assert new_pid != old_pid and local_runtime.target("aws").port == aws.port
    assert predict(aws.url)["model_digest"] == aws.digest


def test_slow_makes_a_server_answer_slowly_and_unslow_restores_it(local_runtime: LocalRuntime) -> None:
    url = local_runtime.target("azure").url

    def latencies(client: httpx.Client, n: int = 15) -> list[float]:
        # Requests arrive at random moments, as clients do; back-to-back requests would all
        # fit into the short windows in which the throttled process runs.
        rng = random.Random(7)
        samples = []
        for _ in range(n):
            time.sleep(rng.uniform(0.0, 0.1))
            t0 = time.perf_counter()
            assert client.post(f"{url}/v1/predict", json=ROW).status_code == 200
            samples.append(time.perf_counter() - t0)
        return samples

    with httpx.Client(timeout=5) as client:
        fast = min(latencies(client))  # best case: the machine is shared, so medians are noisy
        local_runtime.slow("azure", stopped_share=0.8, period=0.1)
        try:
            # a random arrival waits out 80 % of 80 ms windows: about 32 ms on average
            slow = statistics.fmean(latencies(client, 30))
        finally:
            local_runtime.unslow("azure")
        after = min(latencies(client))
    assert slow > 0.015 and slow > 3 * fast, (fast, slow)
    assert after < slow


def test_a_release_that_cannot_become_ready_is_rolled_back(local_runtime: LocalRuntime, digits_bundle: Bundle,
                                                           tmp_path: Path) -> None:
    bad = variant_bundle(digits_bundle, tmp_path / "bad", version="bad", break_model=True)
    result = local_runtime.rollout("gcp", bad)
    assert result.ok is False and result.rolled_back is True
    assert "exited" in result.reason or "ready" in result.reason
    gcp = local_runtime.target("gcp")
    assert gcp.digest == digits_bundle.digest
    assert predict(gcp.url)["model_digest"] == digits_bundle.digest
    assert not local_runtime._process("gcp", "canary").running()


def test_a_good_release_takes_over_the_cloud_port(local_runtime: LocalRuntime, digits_bundle: Bundle,
                                                  tmp_path: Path) -> None:
    new = variant_bundle(digits_bundle, tmp_path / "v2", version="2")
    assert new.digest != digits_bundle.digest
    port = local_runtime.target("aws").port
    result = local_runtime.rollout("aws", new)
    assert result.ok and result.serving_digest == new.digest
    assert local_runtime.target("aws").port == port
    assert predict(local_runtime.target("aws").url)["model_digest"] == new.digest
    assert predict(local_runtime.target("gcp").url)["model_digest"] == digits_bundle.digest


def test_a_store_outage_fails_that_cloud_only_and_leaves_nothing_half_written(
        local_fleet: LocalFleet, digits_bundle: Bundle, tmp_path: Path) -> None:
    new = variant_bundle(digits_bundle, tmp_path / "v3", version="3")
    local_fleet.store_outage("azure")
    try:
        results = local_fleet.release(new)
        assert local_fleet.half_written("azure", new.digest) == []
    finally:
        local_fleet.store_repair("azure")
    assert results["azure"]["ok"] is False and "artifact store of azure" in results["azure"]["reason"]
    assert results["aws"]["ok"] and results["gcp"]["ok"]
    assert local_fleet.serving_digest("azure") == digits_bundle.digest
    assert local_fleet.serving_digest("aws") == new.digest
    assert not local_fleet.rt.bundle_dir("azure", new.digest).exists()
    assert local_fleet.rt.bundle_dir("azure", digits_bundle.digest).is_dir()  # the old release is intact


def test_down_stops_every_server(tmp_path: Path, digits_bundle: Bundle) -> None:
    rt = LocalRuntime(tmp_path / "rt", clouds=("a", "b"))
    targets = rt.deploy(digits_bundle)
    pids = [rt.pid(c) for c in ("a", "b")]
    assert all(pids)
    rt.down()
    assert [rt.pid(c) for c in ("a", "b")] == [None, None]
    assert not any(port_open("127.0.0.1", t.port) for t in targets)
