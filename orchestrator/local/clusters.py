"""Three local kind clusters standing in for the clouds' Kubernetes: mco-aws, mco-gcp, mco-azure.

``mco local up clusters`` creates one single-node kind cluster per cloud (kube context
``kind-mco-<cloud>`` in the default kubeconfig). Each node publishes one NodePort
(:data:`NODE_PORT`) on its own loopback host port, so the model Service of every cloud is
reachable from the host; the port goes into ``mco.local.yaml`` as ``cluster.endpoint``.

What this machine needs to run kind at all (no ``--privileged``, cgroup v1, no registry) is
detected and handled in :mod:`orchestrator.kube.kind_host`; the binaries and the node
image come from ``scripts/setup/50-kind.sh``. Images reach the nodes with
``kind load docker-image`` (:func:`orchestrator.kube.kind.load_image`, which a deploy uses too).

Environment: ``MCO_KIND_NODE_IMAGE`` forces a node image; ``MCO_KIND_KEEP_FAILED=1`` keeps
the node of a cluster that failed to come up, for a post-mortem (its logs are copied into
``.mco/local/clusters/<name>.create.log`` either way).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import ClusterError, ConfigError, MCOError
from orchestrator.kube.kind import (
    KIND_DEFAULT_IMAGE,
    KIND_NETWORK,
    Kind,
    cluster_name,
    kubectl_binary,
    node_container,
    run,
)
from orchestrator.kube.kind_host import MCO_NODE_IMAGE, HostProfile, SysctlGuard, detect
from orchestrator.local.base import CLOUDS, LocalContext, update_local_config
from orchestrator.net import free_port

__all__ = [
    "NODE_PORT",
    "ClusterSpec",
    "ClusterStandIn",
]

NODE_PORT = 30080  # the NodePort the model Service uses in every cluster
ROUTER_NODE_PORT = 30088  # the in-cluster routers' NodePort (kube/router.py), for the global entry
NAMESPACE = "mco"
HOST = "127.0.0.1"
CREATE_TIMEOUT = 600.0
READY_TIMEOUT = 300.0

# A kubeadm patch for our node image, which runs kubelet without systemd.
_CGROUPFS_PATCH = "kind: KubeletConfiguration\ncgroupDriver: cgroupfs\n"
# A kubeadm patch for every local cluster: one node, so one controller-manager and one
# scheduler, and nothing to elect (a missed lease renewal on a loaded machine makes them
# exit). The controller-manager also exits when it starts while etcd is unhealthy, and
# kubelet's crash-loop back-off then leaves Deployments unattended for minutes: etcd skips
# fsync, whose stalls are what makes it slow here. These clusters hold nothing a deploy does
# not re-create.
_SINGLE_NODE_CONTROL_PLANE_PATCH = """\
kind: ClusterConfiguration
controllerManager:
  extraArgs:
    leader-elect: "false"
scheduler:
  extraArgs:
    leader-elect: "false"
etcd:
  local:
    extraArgs:
      unsafe-no-fsync: "true"
"""


@dataclass(frozen=True)
class ClusterSpec:
    cloud: str
    host_port: int
    node_port: int = NODE_PORT
    router_host_port: int | None = None  # where the host reaches the cluster's routers (None: not published)

    @property
    def name(self) -> str:
        return cluster_name(self.cloud)

    @property
    def context(self) -> str:
        return f"kind-{self.name}"

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.host_port}"

    def section(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cluster": {"context": self.context, "kind_cluster": self.name, "namespace": NAMESPACE,
                                           "endpoint": self.endpoint, "node_port": self.node_port}}
        if self.router_host_port:
            # the routers `mco deploy` runs here with router.in_cluster (status --all, the global entry)
            out["router_urls"] = [f"http://{HOST}:{self.router_host_port}"]
        return out

    def kind_config(self, profile: HostProfile) -> dict[str, Any]:
        node: dict[str, Any] = {
            "role": "control-plane",
            "extraPortMappings": [{"containerPort": self.node_port, "hostPort": self.host_port,
                                   "listenAddress": HOST, "protocol": "TCP"}]
            + ([{"containerPort": ROUTER_NODE_PORT, "hostPort": self.router_host_port, "listenAddress": HOST,
                 "protocol": "TCP"}] if self.router_host_port else []),
        }
        config: dict[str, Any] = {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "name": self.name,
                                  "networking": {"apiServerAddress": HOST}, "nodes": [node],
                                  "kubeadmConfigPatches": [_SINGLE_NODE_CONTROL_PLANE_PATCH]}
        if profile.node_image:
            node["image"] = profile.node_image
        if profile.mco_node_image:
            # our image has a static CNI config and no systemd (see scripts/kind/node/Dockerfile)
            config["networking"]["disableDefaultCNI"] = True
            config["kubeadmConfigPatches"].append(_CGROUPFS_PATCH)
        return config


def _container_state(container: str) -> str:
    """``running``, ``exited``, ... or ``absent``."""
    proc = run(["docker", "inspect", "-f", "{{.State.Status}}", container], timeout=30)
    return proc.stdout.strip() if proc.returncode == 0 else "absent"


def _image_id(ref: str, *, container: bool = False) -> str | None:
    """The image ID a node container runs (``container``), or that an image name points to."""
    fmt = "{{.Image}}" if container else "{{.Id}}"
    proc = run(["docker", "inspect", "-f", fmt, ref], timeout=30)
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def _published_port(container: str, node_port: int) -> int | None:
    proc = run(["docker", "inspect", "-f", "{{json .HostConfig.PortBindings}}", container], timeout=30)
    if proc.returncode != 0:
        return None
    bindings = json.loads(proc.stdout.strip() or "null") or {}
    for binding in bindings.get(f"{node_port}/tcp") or []:
        if binding.get("HostPort"):
            return int(binding["HostPort"])
    return None


def _kubectl(context: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return run([kubectl_binary(), "--context", context, f"--request-timeout={int(timeout)}s", *args],
                timeout=timeout + 10)


def node_ready(context: str, *, timeout: float = 5) -> bool | None:
    """True/False for the node's Ready condition; None when the API server does not answer."""
    proc = _kubectl(context, "get", "nodes", "-o", "json", timeout=timeout)
    if proc.returncode != 0:
        return None
    items = json.loads(proc.stdout).get("items", [])
    if not items:
        return False
    return all(any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in item.get("status", {}).get("conditions", [])) for item in items)


def wait_ready(context: str, *, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node_ready(context):
            return
        time.sleep(2)
    raise ClusterError(f"the node of {context} was not Ready within {timeout:.0f} s",
                       hint=f"`kubectl --context {context} describe nodes`; node logs: "
                            f"`docker exec {context.removeprefix('kind-')}-control-plane cat /var/log/mco/kubelet.log`")


class ClusterStandIn:
    """``clusters``: three kind clusters, one per cloud."""

    name = "clusters"

    def __init__(self, clouds: Iterable[str] = CLOUDS) -> None:
        self.clouds = tuple(clouds)
        unknown = [c for c in self.clouds if c not in CLOUDS]
        if unknown:
            raise ConfigError(f"unknown cloud '{unknown[0]}'", hint=f"choose from: {', '.join(CLOUDS)}")

    # ---- helpers --------------------------------------------------------------------------

    def _ports_path(self, ctx: LocalContext) -> Path:
        return ctx.dir_for(self.name) / "ports.json"

    def _specs(self, ctx: LocalContext) -> dict[str, ClusterSpec]:
        """One spec per cloud; a running cluster's port wins, then the recorded one, then a free one."""
        try:
            recorded = json.loads(self._ports_path(ctx).read_text())
        except (OSError, ValueError):
            recorded = {}
        specs = {}
        taken: set[int] = set()
        for cloud in self.clouds:
            container = node_container(cloud)
            port = _published_port(container, NODE_PORT) or recorded.get(cloud)
            while not port or port in taken:
                port = free_port(HOST)
            taken.add(int(port))
            # a cluster made before routers ran in clusters publishes no router port: it is made
            # again (`mco local down clusters && mco local up clusters`) to get one
            exists = _container_state(container) != "absent"
            router_port = _published_port(container, ROUTER_NODE_PORT) if exists else \
                recorded.get(f"{cloud}-router")
            while not exists and (not router_port or router_port in taken):
                router_port = free_port(HOST)
            if router_port:
                taken.add(int(router_port))
            specs[cloud] = ClusterSpec(cloud, int(port), router_host_port=int(router_port) if router_port else None)
        ports = {c: s.host_port for c, s in specs.items()}
        ports.update({f"{c}-router": s.router_host_port for c, s in specs.items() if s.router_host_port})
        self._ports_path(ctx).write_text(json.dumps(ports, indent=2))
        return specs

    # ---- StandIn --------------------------------------------------------------------------

    def up(self, ctx: LocalContext) -> dict[str, dict[str, Any]]:
        state_dir = ctx.dir_for(self.name)
        profile = detect(kind_default_image=KIND_DEFAULT_IMAGE)
        SysctlGuard(state_dir).record()
        kind = Kind(state_dir, profile)
        existing = set(kind.clusters())
        specs = self._specs(ctx)

        def bring_up(spec: ClusterSpec) -> None:
            container = node_container(spec.cloud)
            if spec.name in existing:
                if _container_state(container) != "running":
                    proc = run(["docker", "start", container], timeout=60)
                    if proc.returncode != 0:
                        raise ClusterError(f"could not start {container}: {proc.stderr.strip()}")
            else:
                kind.create(spec.name, spec.kind_config(profile), wait_s=READY_TIMEOUT, timeout=CREATE_TIMEOUT)
                # one DNS replica is plenty for a single node, and the machine is shared
                _kubectl(spec.context, "-n", "kube-system", "scale", "deployment/coredns", "--replicas=1")
            wait_ready(spec.context)
            namespace = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
            applied = run([kubectl_binary(), "--context", spec.context, "apply", "-f", "-"],
                           input=namespace.encode(), timeout=60)
            if applied.returncode != 0:
                raise ClusterError(f"could not create namespace {NAMESPACE} in {spec.name}: {applied.stderr.strip()}")

        errors = []
        with ThreadPoolExecutor(max_workers=len(specs)) as pool:
            futures = {}
            for spec in specs.values():
                futures[spec.cloud] = pool.submit(bring_up, spec)
                if len(futures) == 1:
                    # kind creates its Docker network with the first cluster; start the
                    # others once it exists rather than have them race to create it too.
                    _wait_for_network(futures[spec.cloud])
            for cloud, fut in futures.items():
                try:
                    fut.result()
                except MCOError as exc:
                    errors.append(f"{cloud}: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
        if errors:
            raise ClusterError("local clusters did not come up:\n" + "\n".join(errors),
                               hint="see the logs under " + str(state_dir))
        return {cloud: spec.section() for cloud, spec in specs.items()}

    def down(self, ctx: LocalContext) -> None:
        state_dir = ctx.dir_for(self.name)
        kind = Kind(state_dir)
        existing = set(kind.clusters())
        for cloud in self.clouds:
            if cluster_name(cloud) in existing:
                kind.delete(cluster_name(cloud))
        self._ports_path(ctx).unlink(missing_ok=True)
        if ctx.config_path.is_file():
            update_local_config(ctx.config_path, {}, remove=("cluster",))
        SysctlGuard(state_dir).restore()

    def router_defaults(self, sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Clusters that publish their routers' port get routers: ``mco deploy`` runs 2 router
        replicas in each (``router.in_cluster``) and the global entry checks them."""
        published = bool(sections) and all(sec.get("router_urls") for sec in sections.values())
        return {"in_cluster": True} if published else {}

    def status(self, ctx: LocalContext) -> list[dict[str, Any]]:
        rows = []
        # Only our own node image is rebuilt by `make setup`; stock kind's image is kind's business.
        wanted_image = _image_id(os.environ.get("MCO_KIND_NODE_IMAGE") or MCO_NODE_IMAGE)
        for cloud in self.clouds:
            container = node_container(cloud)
            state = _container_state(container)
            port = _published_port(container, NODE_PORT) if state != "absent" else None
            spec = ClusterSpec(cloud, port or 0)
            if state == "running":
                ready = node_ready(spec.context)
                state = "starting" if ready is None else ("ready" if ready else "not-ready")
            elif state != "absent":
                state = "stopped"
            row = {"name": spec.name, "cloud": cloud, "state": state, "context": spec.context,
                   "host_port": port, "node_port": NODE_PORT, "endpoint": spec.endpoint if port else None}
            if state != "absent" and wanted_image is not None:
                # An existing cluster keeps the node image it was made with; fixes in a newer
                # one (scripts/kind/node) reach it only when it is made again.
                row["node_image_current"] = _image_id(container, container=True) == wanted_image
            rows.append(row)
        return rows


def _wait_for_network(first: Future[None], *, timeout: float = CREATE_TIMEOUT) -> None:
    """Return once kind's Docker network exists (or the first cluster's creation ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not first.done():
        if run(["docker", "network", "inspect", KIND_NETWORK], timeout=30).returncode == 0:
            return
        time.sleep(0.5)
