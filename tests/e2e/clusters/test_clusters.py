"""The three local kind clusters: real nodes, real pods of the model image, reachable from the host."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.kube.kind import node_container
from orchestrator.kube.kind_host import KUBELET_SYSCTLS, SysctlGuard
from orchestrator.local.base import LocalContext
from orchestrator.local.clusters import NODE_PORT

from .conftest import (
    APP,
    E2E_NAMESPACE,
    cluster_report,
    current_url,
    docker,
    kubectl,
    node_ip,
    node_started_after,
    predict,
    repo_root,
    wait_available,
    wait_predict,
)

pytestmark = [pytest.mark.docker, pytest.mark.cluster, pytest.mark.slow]


def test_each_cluster_has_one_ready_node_of_our_kubernetes_version(local_clusters: dict[str, dict[str, Any]]) -> None:
    for cloud, row in local_clusters.items():
        proc = kubectl(row["context"], "get", "nodes", "-o", "json")
        assert proc.returncode == 0, proc.stderr
        (node,) = json.loads(proc.stdout)["items"]
        assert node["metadata"]["name"] == node_container(cloud)
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True"
        assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.4"


def test_status_json_lists_the_three_clusters(local_clusters: dict[str, dict[str, Any]]) -> None:
    mco = str(Path(sys.executable).parent / "mco")
    proc = subprocess.run([mco, "local", "status", "clusters", "--output", "json"], capture_output=True,
                          text=True, timeout=120, cwd=repo_root())
    assert proc.returncode == 0, proc.stderr
    items = {i["name"]: i for i in json.loads(proc.stdout)["items"]}
    assert set(items) == {"mco-aws", "mco-gcp", "mco-azure"}
    ports = set()
    for name, item in items.items():
        assert item["state"] == "ready"
        assert item["context"] == f"kind-{name}"
        assert item["node_port"] == NODE_PORT
        assert item["endpoint"] == f"http://127.0.0.1:{item['host_port']}"
        ports.add(item["host_port"])
    assert len(ports) == 3, "every cluster needs its own host port"


def test_the_model_image_serves_predictions_in_every_cluster(model_deployments: dict[str, dict[str, Any]]) -> None:
    digests = set()
    for cloud, row in model_deployments.items():
        resp = wait_predict(current_url(cloud, row), timeout=60)
        body = resp.json()
        assert len(body["predictions"]) == 2
        assert all(abs(sum(p) - 1.0) < 1e-3 for p in body["probabilities"])
        digests.add(body["model_digest"])
    assert len(digests) == 1, "all three clusters run the same bundle"


def test_pods_resolve_service_names_and_the_other_nodes(model_deployments: dict[str, dict[str, Any]]) -> None:
    # CoreDNS answers cluster names itself and forwards the rest to Docker's resolver (the
    # other clusters' nodes are names only Docker knows); it used to crash-loop on a loop.
    lookup = ("import socket; print(socket.gethostbyname('kubernetes.default.svc.cluster.local'), "
              "socket.gethostbyname('mco-gcp-control-plane'))")
    for row in model_deployments.values():
        proc = kubectl(row["context"], "-n", "kube-system", "wait", "pod", "-l", "k8s-app=kube-dns",
                       "--for=condition=Ready", "--timeout=60s", timeout=90)
        assert proc.returncode == 0, f"{row['context']}: CoreDNS not ready: {proc.stderr}"
        proc = kubectl(row["context"], "-n", E2E_NAMESPACE, "exec", f"deployment/{APP}", "--",
                       "python", "-c", lookup, timeout=60)
        assert proc.returncode == 0, f"{row['context']}: {proc.stderr}"
        service_ip, node_ip = proc.stdout.split()
        assert service_ip == "10.96.0.1"
        assert node_ip.count(".") == 3


def test_host_sysctls_are_untouched_by_kubelet(local_clusters: dict[str, dict[str, Any]]) -> None:
    # `up` recorded the host's values before any kubelet ran; three kubelets have run since.
    recorded = SysctlGuard(LocalContext().dir_for("clusters"))
    assert recorded.path.is_file()
    assert set(json.loads(recorded.path.read_text())) == set(KUBELET_SYSCTLS)
    assert recorded.changed() == {}, "a kubelet changed host sysctls (the node entrypoint should shadow them)"


def test_a_stopped_node_comes_back_by_itself_even_at_another_address(model_deployments: dict[str, dict[str, Any]]) -> None:
    """A node restarted at another bridge address still runs a working control plane.

    While the node is down, a container started on the same Docker network takes its freed
    address (as any container would), so the node comes back at a new one. kubeadm wrote the
    old address into the kubeconfigs of kubelet, the controller-manager and the scheduler;
    a new rollout proves all three reach their own API server again.
    """
    row = model_deployments["aws"]
    container = node_container("aws")
    old_ip = node_ip("aws")
    network = docker("inspect", "-f", "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}{{end}}", container)
    image = docker("inspect", "-f", "{{.Config.Image}}", container)
    address_taker = f"{container}-address-taker"
    docker("stop", "-t", "5", container)
    try:
        with pytest.raises(httpx.HTTPError):
            predict(row["url"], timeout=3)
        assert kubectl(row["context"], "get", "nodes", "--request-timeout=3s", timeout=20).returncode != 0
        docker("run", "-d", "--rm", "--name", address_taker, "--network", network, "--entrypoint", "sleep", image, "600")
    finally:
        started = time.time()
        docker("start", container)
        subprocess.run(["docker", "rm", "-f", address_taker], capture_output=True, timeout=60)
    new_ip = node_ip("aws")
    # The node's entrypoint restarts containerd and kubelet; kubelet restarts the static
    # control plane and the model pod. Nothing else is done here.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and kubectl(row["context"], "get", "nodes", "--request-timeout=3s",
                                                  timeout=20).returncode != 0:
        time.sleep(2)
    wait_available(row["context"], timeout=max(10, deadline - time.monotonic()))
    while time.monotonic() < deadline and not node_started_after(row["context"], started):
        time.sleep(2)
    assert node_started_after(row["context"], started), "no model container started after the node came back"
    # Only a working controller-manager, scheduler and kubelet finish a new rollout.
    assert kubectl(row["context"], "-n", E2E_NAMESPACE, "rollout", "restart", f"deployment/{APP}").returncode == 0
    rollout = kubectl(row["context"], "-n", E2E_NAMESPACE, "rollout", "status", f"deployment/{APP}",
                      f"--timeout={int(max(10, deadline - time.monotonic()))}s", timeout=330)
    assert rollout.returncode == 0, (f"no rollout after the node came back at {new_ip} (was {old_ip}): "
                                     f"{rollout.stderr or rollout.stdout}\n" + cluster_report(row["context"]))
    internal_ip = kubectl(row["context"], "get", "node", container, "-o",
                          "jsonpath={.status.addresses[?(@.type=='InternalIP')].address}").stdout
    assert internal_ip == new_ip, f"the node reports {internal_ip}, Docker gave it {new_ip}"
    url = current_url("aws", row)
    wait_predict(url, timeout=max(10, deadline - time.monotonic()))
