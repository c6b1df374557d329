"""``packaging.model_source: fetch`` on a kind cluster (issue 17, item 7): the pod pulls its bundle
at startup from a storage emulator over the network, checks every sha256, and serves.

The emulator is moto's S3 server, started by this module on the gateway of kind's Docker
network: this machine as the nodes and their pods see it (a pod cannot reach this machine's
loopback, which is why mco refuses a loopback endpoint; a test here holds it to that). The
config names the store with ``credentials: sdk``: ``mco deploy`` on this machine reads the keys
from its environment, the pod from a Kubernetes Secret (``cluster.fetch_credentials_secret``).
Neither the applied objects nor the release record hold them.

One cluster (mco-aws) keeps the module near four minutes. Run it under the kind lock:
``flock /tmp/mco-kind.lock .venv/bin/pytest -q -p no:randomly tests/e2e/deploy/test_fetch_mode_kind.py``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from orchestrator.kube.kind import KIND_NETWORK, node_container
from orchestrator.kube.render import APP_NAME
from orchestrator.local.base import LocalContext
from orchestrator.local.clusters import ClusterStandIn
from orchestrator.net import free_port, wait_for_port
from orchestrator.testing.processes import stop_process
from tests.e2e.clusters.conftest import cluster_report, docker, kubectl, node_ip
from tests.e2e.deploy.conftest import mco

pytestmark = [pytest.mark.cluster, pytest.mark.docker, pytest.mark.slow]

CLOUD = "aws"
SECRET = "mco-e2e-fetch-store"
# moto accepts any key pair; these show where keys travel, and that they never land in a manifest.
ACCESS_KEY = "MCOE2EFETCHACCESSKEY"
SECRET_KEY = "mco-e2e-fetch-secret-key-not-in-any-manifest"
KEYS = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
BUCKET = "mco-fetch"
PREFIX = "e2e-fetch"
DIGITS_ZERO = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8,
               0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]


@dataclass(frozen=True)
class Store:
    endpoint: str
    log: Path


def kind_gateway() -> str:
    """The IPv4 gateway of kind's Docker network (the network exists once a cluster does)."""
    out = docker("network", "inspect", KIND_NETWORK, "-f", "{{json .IPAM.Config}}")
    for entry in json.loads(out) or []:
        if not entry.get("Subnet"):
            continue
        subnet = ipaddress.ip_network(entry["Subnet"], strict=False)
        if subnet.version == 4:
            return str(entry.get("Gateway") or next(subnet.hosts()))
    raise AssertionError(f"kind's Docker network has no IPv4 subnet: {out}")


def storage_section(endpoint: str) -> dict[str, Any]:
    return {"bucket": BUCKET, "region": "us-east-1", "endpoint": endpoint, "prefix": PREFIX, "credentials": "sdk"}


@pytest.fixture(scope="module")
def aws_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """mco-aws alone, Ready; its config section. Deleted at the end unless it was running before
    (or MCO_KEEP_CLUSTERS=1), as ``local_clusters`` does for all three."""
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("the Docker engine is not running; run `make setup`")
    ctx = LocalContext(config_path=tmp_path_factory.mktemp("fetch-cluster") / "mco.local.yaml")
    stand_in = ClusterStandIn([CLOUD])
    already = all(row["state"] == "ready" for row in stand_in.status(ctx))
    section = stand_in.up(ctx)[CLOUD]
    yield section
    if not already and os.environ.get("MCO_KEEP_CLUSTERS") != "1":
        stand_in.down(ctx)


@pytest.fixture(scope="module")
def store(aws_cluster: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """moto's S3 server on kind's gateway, with the bucket made; stopped at the end."""
    from orchestrator.config import CloudConfig
    from orchestrator.providers.loader import get_provider

    gateway = kind_gateway()
    port = free_port(gateway)
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", gateway, "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(gateway, port, timeout=30, what="moto's S3 server")
        endpoint = f"http://{gateway}:{port}"
        with pytest.MonkeyPatch.context() as env:
            for key, value in KEYS.items():
                env.setenv(key, value)
            provider = get_provider(CLOUD, CloudConfig.model_validate({"provider": CLOUD,
                                                                       "storage": storage_section(endpoint)}))
            with provider.artifact_store() as bucket:
                bucket.ensure_bucket()
        yield Store(endpoint, log)
    finally:
        stop_process(proc, timeout=10)


@pytest.fixture(scope="module")
def store_secret(aws_cluster: dict[str, Any]) -> Iterator[str]:
    """The Secret whose keys become the pod's environment. At the end the model Deployment goes
    too: a pod of it started later would wait for a Secret that is gone."""
    cluster = aws_cluster["cluster"]
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": SECRET, "namespace": cluster["namespace"]}, "stringData": KEYS}
    proc = kubectl(cluster["context"], "apply", "-f", "-", input=json.dumps(secret))
    assert proc.returncode == 0, proc.stderr
    yield SECRET
    kubectl(cluster["context"], "-n", cluster["namespace"], "delete", "deployment", APP_NAME, "--wait=false")
    kubectl(cluster["context"], "-n", cluster["namespace"], "delete", "secret", SECRET)


def write_config(root: Path, section: dict[str, Any], storage: dict[str, Any], *, secret: str = SECRET) -> Path:
    cloud = json.loads(json.dumps(section))
    cloud["cluster"]["fetch_credentials_secret"] = secret
    cfg = {
        "project": {"name": "e2e-fetch", "state_dir": str(root / "state")},
        "deploy": {"replicas": 1, "rollout_timeout_s": 120, "auto_rollback": True},
        # the aws SDK only: the image needs what its pods fetch with, not every cloud's SDK
        "packaging": {"model_source": "fetch", "fetch_extras": [CLOUD]},
        "clouds": {CLOUD: {"provider": CLOUD, **cloud, "storage": storage}},
    }
    path = root / "mco.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def live_deployment(cluster: dict[str, Any]) -> dict[str, Any] | None:
    proc = kubectl(cluster["context"], "-n", cluster["namespace"], "get", "deployment", APP_NAME, "-o", "json")
    if proc.returncode != 0:
        assert "NotFound" in proc.stderr, proc.stderr
        return None
    return dict(json.loads(proc.stdout))


def model_pods(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    proc = kubectl(cluster["context"], "-n", cluster["namespace"], "get", "pods", "-l",
                   f"app.kubernetes.io/name={APP_NAME}", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout)["items"])


def refusal_of(pod: dict[str, Any]) -> str | None:
    """The model container's last words when it exited with 3 (it refused to start), else None."""
    for status in pod.get("status", {}).get("containerStatuses", []):
        for state in (status.get("state", {}), status.get("lastState", {})):
            terminated = state.get("terminated")
            if terminated and terminated.get("exitCode") == 3:
                return str(terminated.get("message", ""))
    return None


@pytest.mark.timeout(600)
def test_a_fetch_mode_pod_pulls_its_bundle_from_the_store_verifies_and_serves(
        aws_cluster: dict[str, Any], store: Store, store_secret: str, digits_bundle: Any,
        tmp_path: Path) -> None:
    from orchestrator.config import CloudConfig
    from orchestrator.providers.loader import get_provider

    cluster = aws_cluster["cluster"]
    config = write_config(tmp_path, aws_cluster, storage_section(store.endpoint))
    proc = mco("deploy", str(digits_bundle.path), "--output", "json", config=config, env=KEYS, timeout=540)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{cluster_report(cluster['context'])}"
    out = json.loads(proc.stdout)
    info = out["clouds"][CLOUD]
    assert out["status"] == "deployed" and info["status"] == "deployed", out

    # The image holds no model: it was built to fetch one (and named so).
    labels = json.loads(docker("image", "inspect", "-f", "{{json .Config.Labels}}", info["image_digest"]))
    assert labels["dev.mco.model.source"] == "fetch"
    assert labels["dev.mco.bundle.digest"] == f"sha256:{digits_bundle.digest}"

    # It serves the bundle it was told to fetch.
    resp = httpx.post(f"{info['endpoint']}/v1/predict", json={"instances": [DIGITS_ZERO]}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["model_digest"].removeprefix("sha256:") == digits_bundle.digest
    assert resp.json()["predictions"] == [0]

    # ...which came over kind's network: the pod (its traffic leaves through the node) read
    # model.onnx from the emulator, and said so in its log.
    node = node_ip(CLOUD)
    gets = [line for line in store.log.read_text(errors="replace").splitlines()
            if '"GET ' in line and f"/{digits_bundle.digest}/model.onnx " in line]
    assert any(line.startswith(f"{node} ") for line in gets), (node, gets)
    serving = [p["metadata"]["name"] for p in model_pods(cluster)
               if p["metadata"].get("annotations", {}).get("mco.dev/model-digest") == digits_bundle.digest
               and not p["metadata"].get("deletionTimestamp")]
    assert serving, cluster_report(cluster["context"])
    for pod in serving:
        logs = kubectl(cluster["context"], "-n", cluster["namespace"], "logs", pod)
        assert f"fetching bundle sha256:{digits_bundle.digest[:12]}" in logs.stdout, logs.stdout[-2000:]

    # What the pod was given: the store's settings and a reference to the Secret, never the keys.
    dep = live_deployment(cluster)
    assert dep is not None
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MCO_MODEL_SOURCE"] == "fetch"
    assert json.loads(env["MCO_STORAGE"])["storage"]["endpoint"] == store.endpoint
    assert container["envFrom"] == [{"secretRef": {"name": SECRET}}]
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    text = json.dumps(dep)
    assert ACCESS_KEY not in text and SECRET_KEY not in text
    state = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert state and not any(SECRET_KEY.encode() in p.read_bytes() for p in state)

    # Every sha256 is checked: a pod that finds a substituted model.onnx in the store refuses
    # to start and says which file (exit 3), rather than serve it.
    with pytest.MonkeyPatch.context() as keys:
        for key, value in KEYS.items():
            keys.setenv(key, value)
        provider = get_provider(CLOUD, CloudConfig.model_validate({"provider": CLOUD,
                                                                   "storage": storage_section(store.endpoint)}))
        with provider.artifact_store() as bucket:
            (model_key,) = [k for k in bucket.list(f"{PREFIX}/")
                            if k.endswith(f"/{digits_bundle.digest}/model.onnx")]
            original = bucket.get_bytes(model_key)
            substituted = bytearray(original)
            substituted[len(substituted) // 3] ^= 0x10
            bucket.put_bytes(model_key, bytes(substituted), content_type="application/octet-stream")
            try:
                before = {p["metadata"]["name"] for p in model_pods(cluster)}
                proc = kubectl(cluster["context"], "-n", cluster["namespace"], "delete", "pods", "-l",
                               f"app.kubernetes.io/name={APP_NAME}", "--wait=false")
                assert proc.returncode == 0, proc.stderr
                deadline = time.monotonic() + 120
                refusal = None
                while refusal is None and time.monotonic() < deadline:
                    refusal = next((r for p in model_pods(cluster) if p["metadata"]["name"] not in before
                                    and (r := refusal_of(p)) is not None), None)
                    time.sleep(1)
                assert refusal is not None, cluster_report(cluster["context"])
                assert "refusing to start" in refusal and "model.onnx" in refusal, refusal
            finally:
                bucket.put_bytes(model_key, original, content_type="application/octet-stream")


@pytest.mark.timeout(300)
def test_a_loopback_store_is_refused_before_anything_is_applied(aws_cluster: dict[str, Any], digits_bundle: Any,
                                                                tmp_path: Path) -> None:
    """What ``mco local up storage`` writes (a loopback emulator) cannot serve a fetch-mode pod:
    the deploy stops with exit 2 and the hint, and the cluster is left as it was."""
    cluster = aws_cluster["cluster"]
    loopback = {"bucket": BUCKET, "region": "us-east-1", "endpoint": f"http://127.0.0.1:{free_port()}",
                "prefix": PREFIX, "credentials": "emulator"}
    config = write_config(tmp_path, aws_cluster, loopback)
    before = live_deployment(cluster)
    node_images = docker("exec", node_container(CLOUD), "crictl", "images", "-q")
    proc = mco("deploy", str(digits_bundle.path), "--output", "json", config=config, timeout=120)
    assert proc.returncode == 2, f"{proc.stdout}\n{proc.stderr}"
    err = json.loads(proc.stdout)
    assert err["kind"] == "ConfigError", err
    assert "127.0.0.1" in err["error"] and "loopback" in err["error"] and "cannot reach it" in err["error"]
    assert "model_source: baked" in err["hint"] and "storage.endpoint" in err["hint"]
    # Nothing applied, loaded or recorded.
    after = live_deployment(cluster)
    # (its status may move on by itself, e.g. a pod of the other test restarting; its spec may not)
    assert (after or {}).get("metadata", {}).get("generation") == (before or {}).get("metadata", {}).get("generation")
    assert (after or {}).get("spec") == (before or {}).get("spec")
    assert docker("exec", node_container(CLOUD), "crictl", "images", "-q") == node_images
    history = mco("history", "--output", "json", config=config, timeout=60)
    assert history.returncode == 0 and json.loads(history.stdout)["releases"] == [], history.stdout


@pytest.mark.timeout(300)
def test_a_missing_credentials_secret_fails_the_cloud_before_anything_is_applied(
        aws_cluster: dict[str, Any], store: Store, digits_bundle: Any, tmp_path: Path) -> None:
    """The pods would wait in CreateContainerConfigError for a Secret nobody made: the cloud
    fails naming it, and what ran before runs on untouched."""
    cluster = aws_cluster["cluster"]
    missing = "mco-e2e-no-such-secret"
    config = write_config(tmp_path, aws_cluster, storage_section(store.endpoint), secret=missing)
    before = live_deployment(cluster)
    proc = mco("deploy", str(digits_bundle.path), "--output", "json", config=config, env=KEYS, timeout=240)
    assert proc.returncode == 1, f"{proc.stdout}\n{proc.stderr}"
    info = json.loads(proc.stdout)["clouds"][CLOUD]
    assert info["status"] == "failed" and info["reason"] == "PreflightFailed", info
    assert f"'{missing}'" in info["detail"] and "nothing was applied" in info["detail"], info
    after = live_deployment(cluster)
    assert (after or {}).get("metadata", {}).get("generation") == (before or {}).get("metadata", {}).get("generation")
    assert (after or {}).get("spec") == (before or {}).get("spec")
