"""kind, as far as a deploy needs it: cluster names, the kind and kubectl binaries, ``kind load``.

A deploy to a kind cluster stages its image with ``kind load docker-image`` (:func:`load_image`)
instead of pushing to a registry. The kind CLI runs with this machine's workarounds
(:mod:`orchestrator.kube.kind_host`), so ``kind load`` works wherever ``kind create`` did.
The local stand-ins (``mco local up clusters``) create and delete clusters through
the same :class:`Kind`; nothing here knows about them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import ClusterError
from orchestrator.kube.kind_host import HostProfile, detect, docker_wrapper_dir

__all__ = [
    "KIND_DEFAULT_IMAGE",
    "KIND_NETWORK",
    "KIND_STATE_DIR",
    "Kind",
    "cluster_name",
    "kind_binary",
    "kubectl_binary",
    "load_image",
    "node_container",
    "run",
]

# kind v0.30's default node image; used only on hosts where stock kind can run (see kind_host).
KIND_DEFAULT_IMAGE = "kindest/node:v1.34.0"
# The Docker network kind puts every cluster's nodes on (made with the first cluster). Its
# gateway is this machine as the nodes and their pods see it.
KIND_NETWORK = "kind"
# Where the kind CLI's docker wrapper lives when no other directory is given (see kind_host).
KIND_STATE_DIR = Path(".mco/kind")


def cluster_name(cloud: str) -> str:
    """The kind cluster that stands in for ``cloud`` (``mco local up clusters`` makes it)."""
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


def run(argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120,
        input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run a CLI (kind, kubectl, docker); a hang or a missing binary becomes a ``ClusterError``."""
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False,
                              env=env, input=input.decode() if input else None)
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"`{' '.join(argv[:4])} …` did not finish within {timeout:.0f} s") from exc
    except FileNotFoundError as exc:
        raise ClusterError(f"`{argv[0]}` is not installed", hint="run `make setup`") from exc


class Kind:
    """The kind CLI, run with the host workarounds this machine needs."""

    def __init__(self, state_dir: Path = KIND_STATE_DIR, profile: HostProfile | None = None) -> None:
        self.state_dir = state_dir
        self.binary = kind_binary()
        self.env = dict(os.environ)
        if profile is None:  # every kind command (load and exec too) needs the host's workarounds
            profile = detect(kind_default_image=KIND_DEFAULT_IMAGE)
        if profile.needs_docker_wrapper:
            self.env["PATH"] = f"{docker_wrapper_dir(state_dir)}{os.pathsep}{self.env.get('PATH', '')}"

    def clusters(self) -> list[str]:
        proc = run([self.binary, "get", "clusters"], env=self.env, timeout=60)
        if proc.returncode != 0:
            raise ClusterError(f"`kind get clusters` failed: {proc.stderr.strip()}")
        return [line.strip() for line in proc.stdout.splitlines() if line.strip()]

    def create(self, name: str, config: dict[str, Any], *, wait_s: float, timeout: float) -> None:
        config_path = self.state_dir / f"{name}.kind.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        log_path = self.state_dir / f"{name}.create.log"
        argv = [self.binary, "create", "cluster", "--name", name, "--config", str(config_path),
                "--wait", f"{int(wait_s)}s", "--retain"]
        proc = run(argv, env=self.env, timeout=timeout)
        log_path.write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            # --retain kept the node for a post-mortem; keep its logs, then remove it.
            node_log = run(["docker", "logs", "--tail", "200", f"{name}-control-plane"], timeout=30)
            kubelet_log = run(["docker", "exec", f"{name}-control-plane", "tail", "-n", "100",
                               "/var/log/mco/kubelet.log"], timeout=30)
            with log_path.open("a") as fh:
                fh.write("\n--- node log ---\n" + node_log.stdout + node_log.stderr)
                fh.write("\n--- kubelet log ---\n" + kubelet_log.stdout + kubelet_log.stderr)
            if not os.environ.get("MCO_KIND_KEEP_FAILED"):
                self.delete(name)
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            raise ClusterError(f"kind could not create cluster {name}:\n{tail}", hint=f"full log: {log_path}")

    def delete(self, name: str) -> None:
        proc = run([self.binary, "delete", "cluster", "--name", name], env=self.env, timeout=180)
        if proc.returncode != 0:
            raise ClusterError(f"kind could not delete cluster {name}: {proc.stderr.strip()}")

    def load_image(self, name: str, image: str) -> None:
        proc = run([self.binary, "load", "docker-image", image, "--name", name], env=self.env, timeout=600)
        if proc.returncode != 0:
            raise ClusterError(f"kind could not load image {image} into {name}: {proc.stderr.strip()}",
                               hint="check the image exists locally: `docker image inspect IMAGE`")


def load_image(image: str, clusters: Iterable[str], *, state_dir: Path = KIND_STATE_DIR) -> None:
    """``kind load docker-image IMAGE`` into each named kind cluster, in parallel."""
    kind = Kind(state_dir)
    names = tuple(clusters)
    with ThreadPoolExecutor(max_workers=len(names) or 1) as pool:
        for fut in [pool.submit(kind.load_image, name, image) for name in names]:
            fut.result()
