"""The waves strategy on Kubernetes: one release record, a wave judged and rolled back by
re-applying the recorded manifests, later clouds skipped, the analysis in the history.

A real API server and Deployment controller (simulated node, see conftest.py) take the
releases; a real router in front of real model servers supplies the live metrics the
waves are judged by. A rule no server can meet (p99 under 0.1 µs) makes the failing
wave deterministic; a loose one lets the same flow pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import load_digits

from orchestrator.config import ClusterConfig, RouterConfig, RouterRetryConfig, RouterTargetConfig, parse_config
from orchestrator.kube.client import KubeClient
from orchestrator.net import free_port
from orchestrator.releases.deployer import deploy_release
from orchestrator.releases.lock import DeployLock
from orchestrator.releases.store import ReleaseStore
from orchestrator.releases.strategies import DeployJob
from orchestrator.releases.strategies.waves import RouterTraffic, Waves
from orchestrator.router.process import RouterProcess
from orchestrator.testing.labelled import LabelledTraffic
from orchestrator.testing.model_server import ModelServerProcess
from tests.integration.kube.conftest import CLOUDS, IMAGE_A, IMAGE_B, MODEL_A, SETTINGS
from tests.integration.kube.conftest import targets as _targets

TOKEN = "test-router-token-for-kube-waves"
_ENVS = itertools.count(1)


@pytest.fixture
def env(simulated_cluster: dict[str, Any], digits_bundle: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    n = next(_ENVS)
    clusters = {c: ClusterConfig(context=str(simulated_cluster["context"]), kubeconfig=simulated_cluster["kubeconfig"],
                                 namespace=f"flowwaves{n}-{c}") for c in CLOUDS}  # the simulated node serves "flow*"
    servers = [ModelServerProcess(digits_bundle.path, tmp_path / f"{c}.log").start() for c in CLOUDS]
    cfg = RouterConfig(port=free_port(), policy="weighted",
                       targets=[RouterTargetConfig(name=c, url=s.url, weight=100) for c, s in zip(CLOUDS, servers)],
                       retries=RouterRetryConfig(per_try_timeout_s=2.0, connect_timeout_s=1.0, hedge=False))
    router = RouterProcess(cfg, token=TOKEN, state_dir=tmp_path / "router").start()
    store = ReleaseStore(tmp_path / "releases.db", "waves")
    X, y = load_digits(return_X_y=True)
    try:
        with LabelledTraffic(router.url, X, y, rate=40):
            # the release deployed in waves names the model the servers behind the router run: the
            # routers judge a release by its own model's answers only
            yield {"clusters": clusters, "store": store, "lock": DeployLock(tmp_path, "waves"), "router": router,
                   "model": digits_bundle.digest}
    finally:
        store.close()
        router.stop()
        for s in servers:
            s.stop()


def _live_model(env: dict[str, Any], cloud: str) -> str:
    cluster = env["clusters"][cloud]
    with KubeClient.for_cluster(cluster) as client:
        dep = client.get("apps/v1", "Deployment", "mco-model", cluster.namespace)
    return str(dep["spec"]["template"]["metadata"]["annotations"]["mco.dev/model-digest"])


def _waves(env: dict[str, Any], rules: list[str]) -> Any:
    cfg = parse_config({"analysis": {"require": rules, "steps": [50, 100], "bake_s": 0.5, "max_wait_s": 30,
                                     "interval_s": 0.5, "min_samples": 5}})
    traffic = RouterTraffic([env["router"].url], TOKEN)
    try:
        return Waves().run(DeployJob(cfg, env["store"], env["lock"], _targets(env, IMAGE_B), model_digest=env["model"],
                                     settings=SETTINGS, extra={"traffic": traffic}))
    finally:
        traffic.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_failing_wave_rolls_back_its_cloud_and_never_touches_the_next(env: dict[str, Any]) -> None:
    first = deploy_release(env["store"], env["lock"], _targets(env, IMAGE_A), model_digest=MODEL_A, settings=SETTINGS)
    assert first.release.status == "deployed", {c: (v.reason, v.detail) for c, v in first.release.clouds.items()}
    result = _waves(env, ["error_rate<0.5", "p99_ms<0.0001"])
    rel = result.release
    assert rel.number == 2 and rel.status == "rolled_back"
    aws, gcp = rel.clouds["aws"], rel.clouds["gcp"]
    assert aws.status == "rolled_back" and aws.rolled_back_to == 1 and aws.reason == "AnalysisFailed"
    assert "p99_ms" in str(aws.detail)
    assert gcp.status == "skipped" and gcp.reason == "NotStarted"
    assert _live_model(env, "aws") == MODEL_A and _live_model(env, "gcp") == MODEL_A
    waves = env["store"].get(2).summary()["waves"]  # the history keeps each step and value
    assert waves["status"] == "rolled_back" and waves["abort"]["check"]["metric"] == "p99_ms"
    assert waves["abort"]["check"]["value"] > 0.0001 and waves["never_touched"] == ["gcp"]
    assert result.summary()["waves"]["abort"]["wave"] == 1
    assert env["store"].current("aws").release == 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_passing_waves_deploy_every_cloud_and_record_each_step(env: dict[str, Any]) -> None:
    deploy_release(env["store"], env["lock"], _targets(env, IMAGE_A), model_digest=MODEL_A, settings=SETTINGS)
    result = _waves(env, ["error_rate<0.5", "p99_ms<5000"])
    rel = result.release
    assert rel.status == "deployed", rel.summary()
    assert all(_live_model(env, c) == env["model"] for c in CLOUDS)
    waves = rel.summary()["waves"]
    assert [w["clouds"] for w in waves["waves"]] == [["aws"], ["gcp"]]
    assert all([s["percent"] for s in w["steps"]] == [50, 100] and w["status"] == "passed" for w in waves["waves"])
    values = [c["value"] for w in waves["waves"] for s in w["steps"] for c in s["checks"]]
    assert values and all(v is not None for v in values)
