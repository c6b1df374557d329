"""A waves deploy killed with -9 in the middle of a wave, on a real API server.

The deploy runs in a child process (the waves strategy, ``KubeWaveOps``, the release
history and the deploy lock of a config file) and is killed while its first wave bakes
its 10 % step. Then ``mco status`` says the release was interrupted, where (wave, step),
what the routers' weights are now against the usual ones, and which clouds never finished;
``mco state lock`` says the lock is free and who left it. The next waves deploy gives the
routers their usual weights back before it reads them, and records the old waves as
interrupted.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import RouterConfig, RouterTargetConfig, load_config
from orchestrator.net import free_port
from orchestrator.releases.deployer import CloudTarget, deploy_release
from orchestrator.releases.state import state_backend
from orchestrator.releases.strategies import DeployJob
from orchestrator.releases.strategies.waves import RouterTraffic, Waves
from orchestrator.router.process import RouterProcess
from tests.integration.kube.conftest import CLOUDS, IMAGE_A, IMAGE_B, MODEL_A, MODEL_B, SETTINGS

TOKEN = "test-router-token-for-killed-waves"
TOKEN_ENV = "MCO_TEST_KILLED_WAVES_TOKEN"
_ENVS = itertools.count(1)

# The child: the waves strategy as `mco deploy --strategy waves` runs it, on the config's history and lock.
CHILD = """
import sys
from orchestrator.config import load_config
from orchestrator.releases.deployer import CloudTarget, DeploySettings
from orchestrator.releases.state import state_backend
from orchestrator.releases.strategies import DeployJob
from orchestrator.releases.strategies.waves import RouterTraffic, Waves

cfg = load_config(sys.argv[1])
backend = state_backend(cfg)
store, lock = backend.history(), backend.lock()
targets = [CloudTarget(c, cfg.clouds[c].cluster, "kind", image_ref=sys.argv[2], image_digest=sys.argv[2])
           for c in ("aws", "gcp")]
settings = DeploySettings(replicas=2, rollout_timeout_s=60, poll_s=0.3, readiness_grace_s=20)
with store:
    Waves().run(DeployJob(cfg, store, lock, targets, model_digest=sys.argv[3], settings=settings))
"""


@pytest.fixture
def env(simulated_cluster: dict[str, Any], tmp_path: Path) -> Iterator[dict[str, Any]]:
    n = next(_ENVS)
    router_cfg = RouterConfig(port=free_port(), policy="weighted", token_env=TOKEN_ENV,
                              targets=[RouterTargetConfig(name=c, url=f"http://127.0.0.1:{free_port()}", weight=100)
                                       for c in CLOUDS])
    router = RouterProcess(router_cfg, token=TOKEN, state_dir=tmp_path / "router").start()
    config = tmp_path / "mco.yaml"
    config.write_text(yaml.safe_dump({
        "project": {"name": f"killed{n}", "state_dir": str(tmp_path / "state")},
        "clouds": {c: {"provider": c, "cluster": {"context": str(simulated_cluster["context"]),
                                                  "kubeconfig": str(simulated_cluster["kubeconfig"]),
                                                  "namespace": f"flowkilled{n}-{c}"}} for c in CLOUDS},
        "router": {"token_env": TOKEN_ENV},
        "deploy": {"routers": [router.url]},
        # a bake no test waits out: the child is killed during it
        "analysis": {"require": [], "steps": [10, 50, 100], "bake_s": 600},
    }, sort_keys=False))
    try:
        yield {"config": config, "router": router}
    finally:
        router.stop()


def _mco(*args: str, config: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", *args, "--config", str(config), "-o", "json"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, TOKEN_ENV: TOKEN})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(json.loads(proc.stdout))


def _targets(cfg: Any, image: str) -> list[CloudTarget]:
    return [CloudTarget(c, cfg.clouds[c].cluster, "kind", image_ref=image, image_digest=image) for c in CLOUDS]


def _weights(env: dict[str, Any]) -> dict[str, int]:
    return {k: int(v) for k, v in env["router"]._call("GET", "/admin/weights")["weights"].items()}


def _kill_in_the_first_step(env: dict[str, Any]) -> int:
    """Start the waves deploy in a child; SIGKILL it once its first wave bakes the 10 % step."""
    cfg = load_config(env["config"])
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(env["config"]), IMAGE_B, MODEL_B],
                             env={**os.environ, TOKEN_ENV: TOKEN}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and child.poll() is None:
            with state_backend(cfg).history(create=False) as store:  # type: ignore[union-attr]
                doc = store.get(store.latest_number()).analysis or {}
            steps = (doc.get("waves") or [{}])[-1].get("steps", [])
            if steps and steps[-1]["percent"] == 10:
                break
            time.sleep(0.2)
        assert child.poll() is None, f"the waves deploy ended before it could be killed:\n{child.communicate()[0]}"
        assert _weights(env) == {"aws": 10, "gcp": 100}  # mid-wave: aws at the first step's share
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.pid


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_status_explains_a_waves_deploy_killed_mid_wave_and_the_next_one_restores_the_weights(
        env: dict[str, Any]) -> None:
    cfg = load_config(env["config"])
    backend = state_backend(cfg)
    with backend.history() as store:  # type: ignore[union-attr]
        first = deploy_release(store, backend.lock(), _targets(cfg, IMAGE_A), model_digest=MODEL_A, settings=SETTINGS)
    assert first.release.status == "deployed"

    pid = _kill_in_the_first_step(env)

    status = _mco("status", config=env["config"])
    unfinished = status["unfinished"]
    assert unfinished["release"] == 2 and unfinished["state"] == "interrupted"
    assert unfinished["holder"]["pid"] == pid  # the dead deploy's own note, not a live holder
    assert unfinished["clouds"] == {"aws": "deployed", "gcp": "pending"}
    waves = unfinished["waves"]
    assert (waves["wave"], waves["of"], waves["clouds"], waves["step"]) == (1, 2, ["aws"], 10)
    assert waves["router_weights"] == {"aws": 10, "gcp": 100} and waves["usual_weights"] == {"aws": 100, "gcp": 100}
    message = unfinished["message"]
    assert "release 2 was interrupted" in message and "wave 1 of 2 (aws), at the 10 % step" in message
    assert "aws 10 (usual 100)" in message and "gcp (pending)" in message
    # what runs: aws the killed release's model (its wave had deployed), gcp the first release's
    assert status["clouds"]["aws"]["release"] == 2 and status["clouds"]["gcp"]["release"] == 1
    lock = _mco("state", "lock", config=env["config"])
    assert lock["held"] is False and lock["ended_without_release"]["pid"] == pid

    # The next waves deploy: usual weights back first (else it would take aws 10 for aws's usual share).
    quick = cfg.model_copy(update={"analysis": cfg.analysis.model_copy(update={"bake_s": 0.2})})
    traffic = RouterTraffic([env["router"].url], TOKEN)
    try:
        with backend.history() as store:  # type: ignore[union-attr]
            result = Waves().run(DeployJob(quick, store, backend.lock(), _targets(cfg, IMAGE_A), model_digest=MODEL_A,
                                           settings=SETTINGS, extra={"traffic": traffic}))
            killed = store.get(2)
    finally:
        traffic.close()
    assert result.release.status == "deployed", result.summary()
    assert result.release.analysis["usual_weights"] == {"aws": 100, "gcp": 100}  # type: ignore[index]
    assert _weights(env) == {"aws": 100, "gcp": 100}
    assert killed.analysis is not None and killed.analysis["status"] == "interrupted"
    assert killed.analysis["interrupted"]["restored_weights"] == {"aws": 100, "gcp": 100}
    assert killed.status == "partial" and killed.clouds["gcp"].status == "interrupted"
    assert "unfinished" not in _mco("status", config=env["config"])
