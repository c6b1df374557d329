"""Three local kind clusters standing in for the clouds' Kubernetes: mco-aws, mco-gcp, mco-azure.

``mco local up clusters`` creates one single-node kind cluster per cloud (kube context
``kind-mco-<cloud>`` in the default kubeconfig). Each node publishes one NodePort
(:data:`NODE_PORT`) on its own loopback host port, so the model Service of every cloud is
reachable from the host; the port goes into ``mco.local.yaml`` as ``cluster.endpoint``.

What this machine needs to run kind at all (no ``--privileged``, cgroup v1, no registry) is
detected and handled in :mod:`orchestrator.local.hostcompat`; the binaries and the node
image come from ``scripts/setup/50-kind.sh``. Images reach the nodes with
``kind load docker-image`` (:func:`load_image`).

Environment: ``MCO_KIND_NODE_IMAGE`` forces a node image; ``MCO_KIND_KEEP_FAILED=1`` keeps
the node of a cluster that failed to come up, for a post-mortem (its logs are copied into
``.mco/local/clusters/<name>.create.log`` either way).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import ClusterError, ConfigError, MCOError
from orchestrator.local.base import CLOUDS, LocalContext, update_local_config
from orchestrator.local.hostcompat import MCO_NODE_IMAGE, HostProfile, SysctlGuard, detect, docker_wrapper_dir
from orchestrator.local.processes import free_port

__all__ = [
    "NODE_PORT",
    "ClusterSpec",
    "ClusterStandIn",
    "cluster_name",
    "kind_binary",
    "kubectl_binary",
    "load_image",
    "node_container",
]

NODE_PORT = 30080  # the NodePort the model Service uses in every cluster
NAMESPACE = "mco"
HOST = "127.0.0.1"
CREATE_TIMEOUT = 600.0
READY_TIMEOUT = 300.0
# kind v0.30's default node image; used only on hosts where stock kind can run (see hostcompat).
KIND_DEFAULT_IMAGE = "kindest/node:v1.34.0"

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


def cluster_name(cloud: str) -> str:
    if cloud not in CLOUDS:
        raise ConfigError(f"unknown cloud '{cloud}'", hint=f"choose from: {', '.join(CLOUDS)}")
    return f"mco-{cloud}"


def node_container(cloud: str) -> str:
    """The Docker container that is the cluster's (only) node."""
    return f"{cluster_name(cloud)}-control-plane"


def _tool(name: str) -> str:
    """Prefer the binary `make setup` links into the venv (the version we built) over PATH."""
    venv_bin = Path(sys.executable).parent / name
    if venv_bin.exists():
        return str(venv_bin)
    found = shutil.which(name)
    if found is None:
        raise ClusterError(f"`{name}` is not installed", hint="run `make setup` (scripts/setup/50-kind.sh builds it)")
    return found


def kind_binary() -> str:
    return _tool("kind")


def kubectl_binary() -> str:
    return _tool("kubectl")


@dataclass(frozen=True)
class ClusterSpec:
    cloud: str
    host_port: int
    node_port: int = NODE_PORT

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
        return {"cluster": {"context": self.context, "kind_cluster": self.name, "namespace": NAMESPACE,
                            "endpoint": self.endpoint, "node_port": self.node_port}}

    def kind_config(self, profile: HostProfile) -> dict[str, Any]:
        node: dict[str, Any] = {
            "role": "control-plane",
            "extraPortMappings": [{"containerPort": self.node_port, "hostPort": self.host_port,
                                   "listenAddress": HOST, "protocol": "TCP"}],
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


def _run(argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120,
         input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False,
                              env=env, input=input.decode() if input else None)
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"`{' '.join(argv[:4])} …` did not finish within {timeout:.0f} s") from exc
    except FileNotFoundError as exc:
        raise ClusterError(f"`{argv[0]}` is not installed", hint="run `make setup`") from exc


def _container_state(container: str) -> str:
    """``running``, ``exited``, ... or ``absent``."""
    proc = _run(["docker", "inspect", "-f", "{{.State.Status}}", container], timeout=30)
    return proc.stdout.strip() if proc.returncode == 0 else "absent"


def _image_id(ref: str, *, container: bool = False) -> str | None:
    """The image ID a node container runs (``container``), or that an image name points to."""
    fmt = "{{.Image}}" if container else "{{.Id}}"
    proc = _run(["docker", "inspect", "-f", fmt, ref], timeout=30)
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def _published_port(container: str, node_port: int) -> int | None:
    proc = _run(["docker", "inspect", "-f", "{{json .HostConfig.PortBindings}}", container], timeout=30)
    if proc.returncode != 0:
        return None
    bindings = json.loads(proc.stdout.strip() or "null") or {}
    for binding in bindings.get(f"{node_port}/tcp") or []:
        if binding.get("HostPort"):
            return int(binding["HostPort"])
    return None


class Kind:
    """The kind CLI, run with the host workarounds this machine needs."""

    def __init__(self, state_dir: Path, profile: HostProfile | None = None) -> None:
        self.state_dir = state_dir
        self.binary = kind_binary()
        self.env = dict(os.environ)
        if profile is None:  # every kind command (load and exec too) needs the host's workarounds
            profile = detect(kind_default_image=KIND_DEFAULT_IMAGE)
        if profile.needs_docker_wrapper:
            self.env["PATH"] = f"{docker_wrapper_dir(state_dir)}{os.pathsep}{self.env.get('PATH', '')}"

    def clusters(self) -> list[str]:
        proc = _run([self.binary, "get", "clusters"], env=self.env, timeout=60)
        if proc.returncode != 0:
            raise ClusterError(f"`kind get clusters` failed: {proc.stderr.strip()}")
        return [line.strip() for line in proc.stdout.splitlines() if line.strip()]

    def create(self, spec: ClusterSpec, config: dict[str, Any]) -> None:
        config_path = self.state_dir / f"{spec.name}.kind.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        log_path = self.state_dir / f"{spec.name}.create.log"
        argv = [self.binary, "create", "cluster", "--name", spec.name, "--config", str(config_path),
                "--wait", f"{int(READY_TIMEOUT)}s", "--retain"]
        proc = _run(argv, env=self.env, timeout=CREATE_TIMEOUT)
        log_path.write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            # --retain kept the node for a post-mortem; keep its logs, then remove it.
            node_log = _run(["docker", "logs", "--tail", "200", f"{spec.name}-control-plane"], timeout=30)
            kubelet_log = _run(["docker", "exec", f"{spec.name}-control-plane", "tail", "-n", "100",
                                "/var/log/mco/kubelet.log"], timeout=30)
            with log_path.open("a") as fh:
                fh.write("\n--- node log ---\n" + node_log.stdout + node_log.stderr)
                fh.write("\n--- kubelet log ---\n" + kubelet_log.stdout + kubelet_log.stderr)
            if not os.environ.get("MCO_KIND_KEEP_FAILED"):
                self.delete(spec.name)
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            raise ClusterError(f"kind could not create cluster {spec.name}:\n{tail}", hint=f"full log: {log_path}")

    def delete(self, name: str) -> None:
        proc = _run([self.binary, "delete", "cluster", "--name", name], env=self.env, timeout=180)
        if proc.returncode != 0:
            raise ClusterError(f"kind could not delete cluster {name}: {proc.stderr.strip()}")

    def load_image(self, name: str, image: str) -> None:
        proc = _run([self.binary, "load", "docker-image", image, "--name", name], env=self.env, timeout=600)
        if proc.returncode != 0:
            raise ClusterError(f"kind could not load image {image} into {name}: {proc.stderr.strip()}",
                               hint="check the image exists locally: `docker image inspect IMAGE`")


def _kubectl(context: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return _run([kubectl_binary(), "--context", context, f"--request-timeout={int(timeout)}s", *args],
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
            port = _published_port(node_container(cloud), NODE_PORT) or recorded.get(cloud)
            while not port or port in taken:
                port = free_port(HOST)
            taken.add(int(port))
            specs[cloud] = ClusterSpec(cloud, int(port))
        self._ports_path(ctx).write_text(json.dumps({c: s.host_port for c, s in specs.items()}, indent=2))
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
                    proc = _run(["docker", "start", container], timeout=60)
                    if proc.returncode != 0:
                        raise ClusterError(f"could not start {container}: {proc.stderr.strip()}")
            else:
                kind.create(spec, spec.kind_config(profile))
                # one DNS replica is plenty for a single node, and the machine is shared
                _kubectl(spec.context, "-n", "kube-system", "scale", "deployment/coredns", "--replicas=1")
            wait_ready(spec.context)
            namespace = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
            applied = _run([kubectl_binary(), "--context", spec.context, "apply", "-f", "-"],
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
        if _run(["docker", "network", "inspect", "kind"], timeout=30).returncode == 0:
            return
        time.sleep(0.5)


def load_image(image: str, clouds: Iterable[str] = CLOUDS, *, ctx: LocalContext | None = None) -> None:
    """``kind load docker-image IMAGE`` into each cloud's cluster, in parallel."""
    ctx = ctx or LocalContext()
    kind = Kind(ctx.dir_for(ClusterStandIn.name), detect(kind_default_image=KIND_DEFAULT_IMAGE))
    clouds = tuple(clouds)
    with ThreadPoolExecutor(max_workers=len(clouds) or 1) as pool:
        for fut in [pool.submit(kind.load_image, cluster_name(c), image) for c in clouds]:
            fut.result()
