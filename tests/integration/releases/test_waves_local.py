"""The waves strategy's engine on real parts: three local model servers, a real router,
labelled traffic with feedback, and the release judged by its live metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn.datasets import load_digits

from orchestrator.config import RouterConfig, RouterFeedbackConfig, RouterRetryConfig, RouterTargetConfig
from orchestrator.drills.local_waves import LocalWaveOps
from orchestrator.drills.scenarios import variant_bundle
from orchestrator.local.runtime import LocalRuntime
from orchestrator.net import free_port
from orchestrator.releases.strategies.waves import RouterTraffic, WavePlan, default_waves, run_waves
from orchestrator.router.process import RouterProcess
from orchestrator.testing.labelled import LabelledTraffic

TOKEN = "test-router-token-for-waves"
CLOUDS = ("aws", "gcp", "azure")
# macro F1 counts a class absent from a small window as 0 (the gate's code, zero_division=0): 40 labelled
# answers and 0.7 keep a sound model clear of that, and a permuted one is near 0
RULES = ["error_rate<0.05", "live_macro_f1>=0.7"]


@pytest.fixture
def fleet(digits_bundle: Any, tmp_path: Path) -> Iterator[tuple[LocalRuntime, RouterProcess]]:
    rt = LocalRuntime(tmp_path / "rt", clouds=CLOUDS)
    rt.deploy(digits_bundle)
    cfg = RouterConfig(port=free_port(), policy="weighted",
                       targets=[RouterTargetConfig(name=t.cloud, url=t.url, weight=100) for t in rt.targets()],
                       retries=RouterRetryConfig(per_try_timeout_s=2.0, connect_timeout_s=1.0, hedge=False),
                       feedback=RouterFeedbackConfig(refresh_s=10.0))
    router = RouterProcess(cfg, token=TOKEN, state_dir=tmp_path / "router").start()
    try:
        yield rt, router
    finally:
        router.stop()
        rt.down()


def _plan(**kw: Any) -> WavePlan:
    fields: dict[str, Any] = {"waves": [[c] for c in CLOUDS], "rules": RULES, "steps": [10, 50, 100], "bake_s": 1.0,
                              "max_wait_s": 60.0, "interval_s": 0.5, "min_samples": 40}
    fields.update(kw)
    return WavePlan(**fields)


def test_default_waves_put_the_least_traffic_cloud_first() -> None:
    assert default_waves(["aws", "gcp", "azure"], {"aws": 30.0, "gcp": 2.0, "azure": 10.0}, None) == \
        [["gcp"], ["azure"], ["aws"]]
    assert default_waves(["aws", "gcp", "azure"], {}, None) == [["aws"], ["gcp"], ["azure"]]
    assert default_waves(["aws", "gcp", "azure"], {}, [["gcp"], ["aws", "oracle"]]) == [["gcp"], ["aws"], ["azure"]]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_silently_bad_model_stops_at_the_first_wave_which_rolls_back(fleet, digits_bundle, bundle_factory) -> None:
    rt, router = fleet
    bad = bundle_factory(dataset="digits", strategy="multinomial", permute_labels=7)
    assert bad.card["evaluation"]["report"]["macro"]["f1"] > 0.9  # its own card looks fine: the gate passes it
    X, y = load_digits(return_X_y=True)
    traffic = RouterTraffic([router.url], TOKEN)
    ops = LocalWaveOps(rt, bad, digits_bundle)
    notes: list[str] = []
    with LabelledTraffic(router.url, X, y, rate=60) as load:
        time.sleep(2)
        started = time.time()
        doc = run_waves(_plan(), ops, traffic, note=notes.append)
        ended = time.time()
        time.sleep(1)
    answers = load.answers
    assert doc["status"] == "rolled_back", doc
    abort = doc["abort"]
    assert abort["wave"] == 1 and abort["clouds"] == ["aws"] and abort["step"] == 10
    assert abort["check"]["metric"] == "live_macro_f1" and abort["check"]["value"] < 0.3
    assert "live_macro_f1" in abort["reason"]
    assert [w["status"] for w in doc["waves"]] == ["rolled_back"]
    assert doc["never_touched"] == ["gcp", "azure"] and set(ops.skipped) == {"gcp", "azure"}
    assert all(t.digest == digits_bundle.digest for t in rt.targets())  # aws went back
    served_bad = {a.cloud for a in answers if a.digest == bad.digest}
    assert served_bad == {"aws"}, "only the first wave's cloud ever served the bad model"
    during = [a for a in answers if started <= a.sent <= ended]
    bad_share = sum(1 for a in during if a.digest == bad.digest) / len(during)
    assert bad_share < 0.10  # the first step gives aws 10 of 210 weight units: about 5 %
    assert not [a for a in answers if a.status != 200], "no client errors"
    assert traffic.weights() == {"aws": 100, "gcp": 100, "azure": 100}  # restored
    step = doc["waves"][0]["steps"][0]
    assert step["percent"] == 10 and step["weights"] == {"aws": 10} and step["verdict"] == "failed"
    traffic.close()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_good_model_goes_through_three_waves_without_client_errors(fleet, digits_bundle, tmp_path) -> None:
    rt, router = fleet
    good = variant_bundle(digits_bundle, tmp_path / "m2", version="2")
    X, y = load_digits(return_X_y=True)
    traffic = RouterTraffic([router.url], TOKEN)
    ops = LocalWaveOps(rt, good, digits_bundle)
    t0 = time.time()
    with LabelledTraffic(router.url, X, y, rate=60) as load:
        time.sleep(2)
        doc = run_waves(_plan(), ops, traffic)
        time.sleep(1)
    assert doc["status"] == "deployed", doc.get("abort")
    assert [w["clouds"] for w in doc["waves"]] == [["aws"], ["gcp"], ["azure"]]
    for wave in doc["waves"]:
        assert wave["status"] == "passed"
        assert [s["percent"] for s in wave["steps"]] == [10, 50, 100]
        for step in wave["steps"]:
            assert step["verdict"] == "passed"
            values = {c["metric"]: c["value"] for c in step["checks"]}
            assert values["live_macro_f1"] >= 0.7 and values["error_rate"] < 0.05
    assert all(t.digest == good.digest for t in rt.targets())
    errors = [(a.status, a.cloud, round(a.sent - t0, 2)) for a in load.answers if a.status != 200]
    status = httpx.get(router.url + "/admin/status", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert not errors, f"a waves deploy of a good model adds no client errors: {errors[:10]} {status['overall']}"
    assert not load.feedback_errors
    assert traffic.weights() == {"aws": 100, "gcp": 100, "azure": 100}
    releases = httpx.get(router.url + "/admin/weights", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert releases["releases"] == {"aws": "new", "gcp": "new", "azure": "new"}
    traffic.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ctrl_c_during_a_wave_rolls_it_back_and_records_why(fleet, digits_bundle, tmp_path) -> None:
    rt, router = fleet
    good = variant_bundle(digits_bundle, tmp_path / "m2", version="2")
    X, y = load_digits(return_X_y=True)
    traffic = RouterTraffic([router.url], TOKEN)
    ops = LocalWaveOps(rt, good, digits_bundle)
    bakes: list[float] = []

    def sleep(seconds: float) -> None:  # Ctrl-C arrives while the 50 % step bakes
        bakes.append(seconds)
        if len([b for b in bakes if b == 1.0]) == 2:
            raise KeyboardInterrupt
        time.sleep(seconds)

    with LabelledTraffic(router.url, X, y, rate=60) as load:
        time.sleep(1)
        doc = run_waves(_plan(), ops, traffic, sleep=sleep)
    assert doc["status"] == "interrupted", doc.get("abort")
    assert doc["abort"]["reason"] == "interrupted by the operator (Ctrl-C)" and doc["abort"]["wave"] == 1
    assert [s["percent"] for s in doc["waves"][0]["steps"]] == [10, 50]
    assert all(t.digest == digits_bundle.digest for t in rt.targets())
    assert doc["never_touched"] == ["gcp", "azure"]
    assert traffic.weights() == {"aws": 100, "gcp": 100, "azure": 100}
    assert ops.records[-1]["status"] == "interrupted"  # what the history keeps
    assert not [a for a in load.answers if a.status != 200]
    traffic.close()


def test_a_router_that_cannot_move_a_share_is_refused_before_a_release_is_recorded(tmp_path: Path) -> None:
    """failover with distinct priorities ignores weights: the waves strategy says so and the
    history stays empty (nothing was applied, nothing to explain later)."""
    from orchestrator.config import ClusterConfig, parse_config
    from orchestrator.errors import ConfigError
    from orchestrator.releases.deployer import CloudTarget, DeploySettings
    from orchestrator.releases.lock import DeployLock
    from orchestrator.releases.store import ReleaseStore
    from orchestrator.releases.strategies import DeployJob
    from orchestrator.releases.strategies.waves import Waves

    cfg = RouterConfig(port=free_port(), policy="failover",
                       targets=[RouterTargetConfig(name=c, url=f"http://127.0.0.1:{free_port()}", priority=i)
                                for i, c in enumerate(CLOUDS)])
    router = RouterProcess(cfg, token=TOKEN, state_dir=tmp_path / "router").start()
    store = ReleaseStore(tmp_path / "releases.db", "refused")
    traffic = RouterTraffic([router.url], TOKEN)
    targets = [CloudTarget(c, ClusterConfig(context="never-contacted", namespace="mco"), "kind",
                           image_ref="sha256:" + "1" * 64, image_digest="sha256:" + "1" * 64) for c in CLOUDS]
    try:
        job = DeployJob(parse_config({"analysis": {"require": RULES}}), store, DeployLock(tmp_path, "refused"),
                        targets, model_digest="2" * 64, settings=DeploySettings(), extra={"traffic": traffic})
        with pytest.raises(ConfigError) as err:
            Waves().run(job)
        assert "'failover' policy" in err.value.message and "router.policy: weighted" in str(err.value.hint)
        assert store.list() == []
    finally:
        traffic.close()
        store.close()
        router.stop()
