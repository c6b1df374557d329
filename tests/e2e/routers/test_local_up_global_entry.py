"""`mco local up` then `mco deploy`: routers in every kind cluster, the global entry in front.

What a user gets from `mco local up clusters global-entry` and `mco deploy m1` with the
config they wrote (no router setting of their own): each of the three clusters runs the
model and 2 router replicas; the HAProxy entry answers `/v1/predict` with `x-mco-cloud`
and `x-mco-router`; with every cloud healthy, traffic entering a cloud's router is served by
that cloud's model (through the router's published port, and through the entry: the pod
named in `x-mco-router` runs in the cloud named in `x-mco-cloud`). Then the two drills
through the entry at 100 requests/s: `region-loss --cloud aws` (0 client errors, RTO within
5 s, failback once the node is started again) and `router-crash --cloud gcp` (0 client
errors), each leaving its report as JSON, PNG and HTML.

Every command runs in one scratch directory (the stand-ins keep their state under
`.mco/local` there), through the `mco` CLI as a user runs it. The module's first test to
run deploys; the others start from that deploy, in any order.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.clusters.conftest import local_clusters  # noqa: F401  (re-exported fixture)

pytestmark = [pytest.mark.cluster, pytest.mark.docker, pytest.mark.slow]

CLOUDS = ("aws", "gcp", "azure")
ROW = [0.0] * 64
MCO = str(Path(sys.executable).with_name("mco"))


def _mco(work: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MCO, *args], capture_output=True, text=True, timeout=timeout, cwd=work, check=False)


def _mco_json(work: Path, *args: str, timeout: float = 900) -> dict[str, Any]:
    proc = _mco(work, *args, "--output", "json", timeout=timeout)
    assert proc.returncode == 0, f"mco {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n" \
                                 f"{proc.stderr[-3000:]}"
    return dict(json.loads(proc.stdout))


def _kubectl(cloud: str, *args: str) -> subprocess.CompletedProcess[str]:
    from orchestrator.kube.kind import kubectl_binary

    return subprocess.run([kubectl_binary(), "--context", f"kind-mco-{cloud}", "-n", "mco", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def _ready(cloud: str, deployment: str) -> int:
    out = _kubectl(cloud, "get", "deployment", deployment, "-o", "json")
    return int(json.loads(out.stdout).get("status", {}).get("readyReplicas") or 0) if out.returncode == 0 else 0


def _router_pods(cloud: str) -> set[str]:
    out = _kubectl(cloud, "get", "pods", "-l", "app.kubernetes.io/name=mco-router", "-o", "json")
    assert out.returncode == 0, out.stderr
    return {p["metadata"]["name"] for p in json.loads(out.stdout)["items"]}


def _wait_answering(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            resp = httpx.post(f"{url}/v1/predict", json={"instances": [ROW]}, timeout=5)
            if resp.status_code == 200:
                return
            last = resp.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(1)
    raise AssertionError(f"{url}/v1/predict did not answer within {timeout:g} s: {last}")


@pytest.fixture(scope="module")
def local_up(local_clusters: dict[str, dict[str, Any]],  # noqa: F811
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A scratch directory where `mco local up clusters` and `mco local up global-entry` ran."""
    work = tmp_path_factory.mktemp("local-up")
    for stand_in in ("clusters", "global-entry"):  # the clusters are up already: this writes their sections
        _mco_json(work, "local", "up", stand_in, "--config-out", "mco.local.yaml", timeout=1800)
    path = work / "mco.local.yaml"
    doc = yaml.safe_load(path.read_text())
    assert doc["router"]["in_cluster"] is True  # written by `mco local up clusters`, not by this test
    # One model replica per cluster: three clusters, their six routers and the drills share two cores.
    doc["deploy"] = {"replicas": 1, "rollout_timeout_s": 240, "auto_rollback": True}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    yield work
    _mco(work, "local", "down", "global-entry", "--config-out", "mco.local.yaml")


@pytest.fixture(scope="module")
def deployed(local_up: Path, digits_bundle: Any) -> dict[str, Any]:
    """`mco deploy m1` with the config `mco local up` wrote; the entry answering through the routers."""
    work = local_up
    started = time.monotonic()
    proc = _mco(work, "deploy", str(digits_bundle.path), "--config", "mco.local.yaml", "--output", "json",
                timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    token = (work / ".mco" / "router.token").read_text().strip()
    assert token not in proc.stdout + proc.stderr
    status = _mco_json(work, "local", "status", "global-entry", "--config-out", "mco.local.yaml")
    entry = status["items"][0]
    assert entry["state"] == "running", entry
    _wait_answering(entry["url"])
    return {"deploy": out, "entry": entry["url"], "deploy_s": round(time.monotonic() - started, 1),
            "config": yaml.safe_load((work / "mco.local.yaml").read_text())}


def test_local_up_and_deploy_leave_the_model_and_2_routers_in_every_cluster(deployed: dict[str, Any]) -> None:
    out = deployed["deploy"]
    print(f"mco deploy with routers in the clusters: {deployed['deploy_s']} s")
    for cloud in CLOUDS:
        assert out["clouds"][cloud]["status"] == "deployed", out["clouds"][cloud]
        assert out["clouds"][cloud]["router_image"].startswith("sha256:")
        assert _ready(cloud, "mco-model") >= 1, _kubectl(cloud, "get", "pods", "-o", "wide").stdout
        deadline = time.monotonic() + 120
        while _ready(cloud, "mco-router") < 2:
            assert time.monotonic() < deadline, _kubectl(cloud, "describe", "deployment", "mco-router").stdout[-2000:]
            time.sleep(2)


def test_the_global_entry_answers_and_each_routers_own_cloud_serves(deployed: dict[str, Any]) -> None:
    pods = {cloud: _router_pods(cloud) for cloud in CLOUDS}
    seen: dict[str, int] = {}
    with httpx.Client(timeout=10) as client:
        for _ in range(30):
            resp = client.post(f"{deployed['entry']}/v1/predict", json={"instances": [ROW]})
            assert resp.status_code == 200, resp.text
            cloud, router = resp.headers["x-mco-cloud"], resp.headers["x-mco-router"]
            # locality through the entry: the router that forwarded runs in the cloud whose model answered
            assert router in pods[cloud], (router, cloud, pods)
            seen[cloud] = seen.get(cloud, 0) + 1
        assert set(seen) == set(CLOUDS), seen  # round robin over the three clouds' routers
        # locality at each cloud's router (its published port, what the entry checks): its own model serves
        for cloud in CLOUDS:
            (url,) = deployed["config"]["clouds"][cloud]["router_urls"]
            assert client.get(f"{url}/readyz/local").status_code == 200
            answers = [client.post(f"{url}/v1/predict", json={"instances": [ROW]}) for _ in range(10)]
            assert {a.status_code for a in answers} == {200}
            assert {a.headers["x-mco-cloud"] for a in answers} == {cloud}


def _drill(work: Path, bundle: Any, scenario: str, cloud: str) -> dict[str, Any]:
    proc = _mco(work, "drill", "run", scenario, "--cloud", cloud, "--config", "mco.local.yaml", "--runtime", "kind",
                "--rate", "100", "--bundle", str(bundle.path), "--runs-dir", str(work / "runs"), "--output", "json",
                timeout=900)
    out = json.loads(proc.stdout)
    assert {"scenario", "passed", "rto_seconds", "client_errors", "requests", "failback_seconds", "report"} <= set(out), \
        (out, proc.stderr[-2000:])
    run_dir = Path(out["run_dir"])
    for name in ("report.json", "timeline.png", "timeline.html"):
        assert (run_dir / name).stat().st_size > 0
    print(f"{scenario} on {cloud}: passed={out['passed']} requests={out['requests']} "
          f"errors={out['client_errors']} rto={out['rto_seconds']} failback={out['failback_seconds']} "
          f"served_by={out['measures'].get('served_by')}")
    assert proc.returncode == 0 and out["passed"], (out["missed"], out["measures"].get("error_samples"),
                                                    proc.stderr[-2000:])
    return out


def test_region_loss_through_the_global_entry(local_up: Path, deployed: dict[str, Any], digits_bundle: Any) -> None:
    out = _drill(local_up, digits_bundle, "region-loss", "aws")
    assert out["client_errors"] == 0
    assert out["rto_seconds"] is not None and out["rto_seconds"] <= 5.0
    assert out["failback_seconds"] is not None  # aws answers clients again after `docker start`
    markers = json.loads((Path(out["run_dir"]) / "report.json").read_text())["markers"]
    assert "docker stop mco-aws-control-plane" in json.dumps(markers)
    assert out["measures"]["served_by"].get("gcp", 0) > 0 and out["measures"]["served_by"].get("azure", 0) > 0


def test_router_crash_through_the_global_entry(local_up: Path, deployed: dict[str, Any], digits_bundle: Any) -> None:
    out = _drill(local_up, digits_bundle, "router-crash", "gcp")
    assert out["client_errors"] == 0
    markers = json.loads((Path(out["run_dir"]) / "report.json").read_text())["markers"]
    assert "deleted the router pods on gcp" in json.dumps(markers)
