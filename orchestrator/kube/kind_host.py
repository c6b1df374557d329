"""Host workarounds for kind: the one place that knows what this kind of machine lacks.

Everything here is detection-based. On an ordinary Docker host (``docker run --privileged``
works) none of it applies and mco runs stock kind with kind's own node image. On a host
like the one mco's CI runs on, these were found necessary, and are applied:

1. ``--privileged`` fails. dockerd's capability bounding set lacks ``CAP_SYS_RESOURCE``, so
   runc cannot grant "all capabilities" ("unable to apply caps: operation not permitted"),
   and kind always passes ``--privileged`` (to ``docker run`` and ``docker exec``). kind
   therefore reaches Docker through a small wrapper (written by :func:`docker_wrapper_dir`)
   that swaps that one flag of ``docker run`` for :data:`PRIVILEGED_SUBSTITUTE`: every
   capability the host has, no seccomp or AppArmor profile, unmasked ``/proc`` and ``/sys``
   paths, and access to all devices; ``docker exec`` simply inherits the node's.

2. Without ``--privileged`` Docker mounts the cgroup v1 hierarchies, ``/sys`` read-only and
   gives no ``/dev/kmsg``, and even root cannot lower ``oom_score_adj``. The node image's
   entrypoint (``scripts/kind/node/entrypoint``) repairs that from inside the node, again
   only when it finds the problem: ``mount -o remount,bind,rw`` per cgroup hierarchy (a
   plain remount fails with "mount point is busy"), ``mknod /dev/kmsg``,
   ``mount --make-rshared /``, and containerd's ``restrict_oom_score_adj = true``.
   ``/var`` (and so ``/var/lib/containerd``) is a volume: kind always mounts one there.

3. With ``/proc/sys`` unmasked, kubelet would rewrite host-wide sysctls
   (``vm.overcommit_memory`` 1, ``kernel.panic`` 10, ``kernel.panic_on_oops`` 1, ...). The
   node entrypoint shadows those files so kubelet finds its values already set; as a second
   line of defence :class:`SysctlGuard` records the host's values before the first cluster
   starts and ``mco local down clusters`` puts back any that changed.

4. Nodes use Docker's bridge network (kind's default ``kind`` network), never the host's, so
   kubelet and kube-proxy program iptables inside the node, not on the host.

No registry can be reached here, so the node image is the one ``scripts/setup/50-kind.sh``
builds (``mco-kind/node:latest``) whenever kind's own image is not available locally.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ClusterError

__all__ = [
    "MCO_NODE_IMAGE",
    "MCO_NODE_LABEL",
    "PRIVILEGED_SUBSTITUTE",
    "HostProfile",
    "SysctlGuard",
    "detect",
    "docker_wrapper_dir",
]

MCO_NODE_IMAGE = "mco-kind/node:latest"
MCO_NODE_LABEL = "io.mco.kind-node"

PRIVILEGED_SUBSTITUTE = (
    "--cap-add=ALL",
    "--cap-drop=SYS_RESOURCE",
    "--security-opt", "systempaths=unconfined",
    "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined",
    "--device-cgroup-rule=a *:* rwm",
)

# The host-wide tunables kubelet sets (pkg/kubelet/cm, setupKernelTunables).
KUBELET_SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)


@dataclass(frozen=True)
class HostProfile:
    """What this Docker host can do, and so how kind must be driven on it."""

    privileged_works: bool
    privileged_error: str
    node_image: str | None  # None: kind's default image (stock kind)
    mco_node_image: bool  # the node image is ours: static CNI, cgroupfs kubelet

    @property
    def needs_docker_wrapper(self) -> bool:
        return not self.privileged_works

    def describe(self) -> list[str]:
        notes = []
        if not self.privileged_works:
            notes.append("docker --privileged is refused here; kind runs through a wrapper that grants "
                         "all capabilities but CAP_SYS_RESOURCE instead")
        notes.append(f"node image: {self.node_image or 'kind default'}")
        return notes


def _docker() -> str:
    docker = shutil.which("docker")
    if docker is None:
        raise ClusterError("the docker CLI is not installed", hint="run `make setup` (scripts/setup/10-docker.sh)")
    return docker


def _run(argv: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"`{' '.join(argv[:3])} …` did not finish within {timeout:.0f} s") from exc


def _image_labels(image: str) -> dict[str, str] | None:
    proc = _run([_docker(), "image", "inspect", "-f", "{{json .Config.Labels}}", image])
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip() or "null") or {}


def detect(*, kind_default_image: str | None = None) -> HostProfile:
    """Probe the Docker host once: can it run privileged containers, which node image to use.

    ``MCO_KIND_NODE_IMAGE`` forces a node image. Otherwise a host where ``--privileged``
    works uses kind's default image, like stock kind; a host where it fails needs ours.
    """
    docker = _docker()
    info = _run([docker, "info", "-f", "{{.ServerVersion}}"], timeout=30)
    if info.returncode != 0:
        raise ClusterError("the Docker engine is not reachable: " + (info.stderr.strip() or info.stdout.strip()),
                           hint="start it with `make setup` (scripts/setup/10-docker.sh)")
    probe_image = os.environ.get("MCO_KIND_PROBE_IMAGE") or MCO_NODE_IMAGE
    if _image_labels(probe_image) is None:
        probe_image = "mco-base/bookworm:latest"
    if _image_labels(probe_image) is None:
        raise ClusterError(f"no local image to probe Docker with ({MCO_NODE_IMAGE} or mco-base/bookworm:latest)",
                           hint="run `make setup`")
    proc = _run([docker, "run", "--rm", "--privileged", "--entrypoint", "true", probe_image])
    privileged_works = proc.returncode == 0
    error = "" if privileged_works else (proc.stderr.strip().splitlines() or ["failed"])[0]

    forced = os.environ.get("MCO_KIND_NODE_IMAGE")
    mco_image_present = _image_labels(MCO_NODE_IMAGE) is not None
    image: str | None
    if forced:
        image = forced
    elif privileged_works and kind_default_image and _image_labels(kind_default_image) is not None:
        image = None  # stock kind with its own image, already local
    elif mco_image_present:
        image = MCO_NODE_IMAGE  # no registry needed
    elif privileged_works:
        image = None  # stock kind; kind pulls its image
    else:
        raise ClusterError(f"the kind node image {MCO_NODE_IMAGE} is not in Docker, and this host cannot run "
                           f"kind's own image ({error})", hint="build it with `make setup` (scripts/setup/50-kind.sh)")
    labels = _image_labels(image) if image else {}
    if image and labels is None:
        raise ClusterError(f"the kind node image {image} is not in Docker",
                           hint="build it with `make setup` (scripts/setup/50-kind.sh) or unset MCO_KIND_NODE_IMAGE")
    return HostProfile(privileged_works=privileged_works, privileged_error=error, node_image=image,
                       mco_node_image=bool(labels and labels.get(MCO_NODE_LABEL) == "1"))


_WRAPPER = """#!/bin/sh
# Written by mco (orchestrator/kube/kind_host.py). kind runs its nodes (and its execs)
# with --privileged, which this Docker host refuses. `docker run`/`create` get an
# equivalent the host can grant instead; `docker exec` needs nothing extra, since it
# inherits the node's capabilities. Everything else passes through unchanged.
real={real}
case "$1" in
  run|create|exec) ;;
  *) exec "$real" "$@" ;;
esac
command="$1"
shift
for arg in "$@"; do
  shift
  if [ "$arg" = --privileged ]; then
    if [ "$command" != exec ]; then set -- "$@" {substitute}; fi
  else
    set -- "$@" "$arg"
  fi
done
exec "$real" "$command" "$@"
"""


def docker_wrapper_dir(state_dir: Path, *, real_docker: str | None = None) -> Path:
    """A directory holding a ``docker`` that swaps ``--privileged``; put it first on kind's PATH."""
    import shlex

    bin_dir = (state_dir / "bin").resolve()  # Go's exec refuses relative PATH entries
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = _WRAPPER.format(real=shlex.quote(real_docker or _docker()),
                             substitute=" ".join(shlex.quote(a) for a in PRIVILEGED_SUBSTITUTE))
    wrapper = bin_dir / "docker"
    if not wrapper.is_file() or wrapper.read_text() != script:
        wrapper.write_text(script)
        wrapper.chmod(0o755)
    return bin_dir


class SysctlGuard:
    """Remember the host's kubelet-sensitive sysctls before clusters start; restore them after."""

    def __init__(self, state_dir: Path, *, proc_sys: Path = Path("/proc/sys")) -> None:
        self.path = state_dir / "host-sysctls.json"
        self.proc_sys = proc_sys

    def _file(self, name: str) -> Path:
        return self.proc_sys / name.replace(".", "/")

    def read(self) -> dict[str, str]:
        values = {}
        for name in KUBELET_SYSCTLS:
            try:
                values[name] = self._file(name).read_text().strip()
            except OSError:
                continue
        return values

    def record(self) -> None:
        """Record once: a second ``up`` must not overwrite what the host had before the first."""
        if not self.path.is_file():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.read(), indent=2))

    def changed(self) -> dict[str, tuple[str, str]]:
        """``{name: (recorded, now)}`` for every sysctl that differs from the record."""
        try:
            recorded = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        now = self.read()
        return {k: (v, now.get(k, "")) for k, v in recorded.items() if now.get(k) != v}

    def restore(self) -> dict[str, str]:
        """Put back what changed; return ``{name: value restored}``. Forgets the record."""
        restored = {}
        for name, (value, _now) in self.changed().items():
            try:
                self._file(name).write_text(value + "\n")
                restored[name] = value
            except OSError as exc:
                raise ClusterError(f"could not restore host sysctl {name}={value}: {exc}",
                                   hint=f"run `sysctl -w {name}={value}` as root") from exc
        self.path.unlink(missing_ok=True)
        return restored
