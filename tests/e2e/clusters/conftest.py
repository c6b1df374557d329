"""Fixtures for tests against the three local kind clusters (real nodes, real pods).

``local_clusters`` brings mco-aws, mco-gcp and mco-azure up when they are not running
(``make setup`` must have built kind and the node image) and deletes them again at the end
of the session unless they were already running before it, or MCO_KEEP_CLUSTERS=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.kube.kind import cluster_name, kubectl_binary, load_image, node_container
from orchestrator.local.base import CLOUDS, LocalContext
from orchestrator.local.clusters import NODE_PORT, ClusterStandIn

E2E_NAMESPACE = "mco-e2e-clusters"
APP = "e2e-model"


def kubectl(context: str, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([kubectl_binary(), "--context", context, *args], input=input, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def local_clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    """``{cloud: status row}`` for three Ready clusters."""
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("the Docker engine is not running; run `make setup`")
    ctx = LocalContext(config_path=tmp_path_factory.mktemp("clusters") / "mco.local.yaml")
    stand_in = ClusterStandIn()
    already = all(row["state"] == "ready" for row in stand_in.status(ctx))
    stand_in.up(ctx)
    rows = {row["cloud"]: row for row in stand_in.status(ctx)}
    yield rows
    if not already and os.environ.get("MCO_KEEP_CLUSTERS") != "1":
        stand_in.down(ctx)


@pytest.fixture(scope="session")
def model_image(digits_bundle: Any, local_clusters: dict[str, dict[str, Any]]) -> str:
    """The model image (from `mco package`), loaded into every cluster with `kind load`."""
    from orchestrator.packaging.build import build_image

    built = build_image(digits_bundle.path)
    load_image(built.image, [cluster_name(c) for c in CLOUDS])
    return built.image


def _manifests(image: str, node_port: int | None) -> str:
    labels = {"app": APP}
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": E2E_NAMESPACE}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": APP, "namespace": E2E_NAMESPACE},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                      "name": "model", "image": image, "imagePullPolicy": "Never",
                      "ports": [{"containerPort": 8080}],
                      "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
                      "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 2},
                      "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
                  }]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": APP, "namespace": E2E_NAMESPACE},
         "spec": {"type": "NodePort", "selector": labels,
                  "ports": [{"port": 8080, "targetPort": 8080,
                             **({"nodePort": node_port} if node_port else {})}]}},
    ]
    return "\n---\n".join(json.dumps(o) for o in objects)


def cluster_report(context: str) -> str:
    """What a failed e2e test prints about a cluster: every pod, the node's conditions, recent
    warnings and the controller-manager's last log lines, so a CI log names the cause."""
    parts = []
    for title, args in [
        ("pods", ("get", "pods", "-A", "-o", "wide")),
        ("node conditions", ("get", "nodes", "-o", "jsonpath={range .items[*].status.conditions[*]}"
                                                   "{.type}={.status} {.reason}{'\\n'}{end}")),
        ("warnings", ("get", "events", "-A", "--field-selector", "type=Warning", "--sort-by=.lastTimestamp")),
        ("controller-manager log", ("-n", "kube-system", "logs", "-l", "component=kube-controller-manager",
                                    "--tail=15")),
    ]:
        try:
            proc = kubectl(context, *args, "--request-timeout=10s", timeout=30)
            text = (proc.stdout or proc.stderr).strip()
        except subprocess.TimeoutExpired:
            text = "(kubectl timed out)"
        parts.append(f"--- {context}: {title}\n" + "\n".join(text.splitlines()[-25:]))
    return "\n".join(parts)


def wait_available(context: str, *, timeout: float = 150) -> None:
    proc = kubectl(context, "-n", E2E_NAMESPACE, "wait", f"deployment/{APP}", "--for=condition=Available",
                   f"--timeout={int(timeout)}s", timeout=timeout + 30)
    assert proc.returncode == 0, (f"{context}: deployment not Available: {proc.stderr or proc.stdout}\n"
                                  + cluster_report(context))


def predict(endpoint: str, *, timeout: float = 5) -> httpx.Response:
    return httpx.post(f"{endpoint}/v1/predict", json={"instances": [[0.0] * 64, [8.0] * 64]}, timeout=timeout)


def wait_predict(endpoint: str, *, timeout: float = 120) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: Exception | str = "no attempt"
    while time.monotonic() < deadline:
        try:
            resp = predict(endpoint)
            if resp.status_code == 200:
                return resp
            last = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(1)
    raise AssertionError(f"{endpoint}/v1/predict did not answer within {timeout:.0f} s: {last}")


def _node_port_owner(context: str) -> str | None:
    """``namespace/name`` of a Service outside our namespace that holds NODE_PORT, if any."""
    proc = kubectl(context, "get", "services", "-A", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    for svc in json.loads(proc.stdout)["items"]:
        if svc["metadata"]["namespace"] == E2E_NAMESPACE:
            continue
        if any(p.get("nodePort") == NODE_PORT for p in svc["spec"].get("ports", [])):
            return f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"
    return None


def docker(*args: str, timeout: float = 60) -> str:
    """``docker ARGS``'s stdout; a failure fails the test."""
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, timeout=timeout).stdout.strip()


def node_ip(cloud: str) -> str:
    return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                  node_container(cloud)).split()[0]


def _assigned_node_port(context: str) -> int:
    proc = kubectl(context, "-n", E2E_NAMESPACE, "get", "service", APP, "-o", "jsonpath={.spec.ports[0].nodePort}")
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout)


def model_url(cloud: str, row: dict[str, Any]) -> str:
    """The test Service on the node's current bridge address (used when NodePort 30080 is taken)."""
    return f"http://{node_ip(cloud)}:{_assigned_node_port(row['context'])}"


def current_url(cloud: str, row: dict[str, Any]) -> str:
    """The row's model URL now: a node restarted by another test of the module may have moved."""
    return row["endpoint"] if row["url"] == row["endpoint"] else model_url(cloud, row)


@pytest.fixture(scope="module")
def model_deployments(local_clusters: dict[str, dict[str, Any]], model_image: str) -> Iterator[dict[str, dict[str, Any]]]:
    """A Deployment + NodePort Service of the model image in every cluster, Available.

    Each row gains ``url``: the cluster's mapped loopback endpoint (NodePort 30080). When a
    deployed release already holds that NodePort (mco deploy, a drill), the test Service
    takes any free NodePort instead, reached on the node's address on Docker's bridge, so
    the test neither fails on nor disturbs what is deployed. The Service is deleted first
    on teardown, so the NodePort is free again for the deploy tests.
    """
    rows = {cloud: dict(row) for cloud, row in local_clusters.items()}
    for cloud, row in rows.items():
        owner = _node_port_owner(row["context"])
        proc = kubectl(row["context"], "apply", "-f", "-", input=_manifests(model_image, None if owner else NODE_PORT))
        assert proc.returncode == 0, proc.stderr
        row["url"] = model_url(cloud, row) if owner else row["endpoint"]
    for row in rows.values():
        wait_available(row["context"])
    yield rows
    for row in rows.values():
        kubectl(row["context"], "-n", E2E_NAMESPACE, "delete", "service", APP, "--wait=true")
        kubectl(row["context"], "delete", "namespace", E2E_NAMESPACE, "--wait=false")


def node_started_after(context: str, since: float) -> bool:
    """True when the model container that is ready now started after ``since`` (epoch seconds)."""
    proc = kubectl(context, "-n", E2E_NAMESPACE, "get", "pods", "-l", f"app={APP}", "-o", "json")
    if proc.returncode != 0:
        return False
    from datetime import datetime

    for pod in json.loads(proc.stdout)["items"]:
        for status in pod.get("status", {}).get("containerStatuses", []):
            started = status.get("state", {}).get("running", {}).get("startedAt")
            if status.get("ready") and started:
                if datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp() >= since - 1:
                    return True
    return False


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]
