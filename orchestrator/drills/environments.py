"""Where a drill runs: the embedded local runtime, or the kind clusters, and how to choose.

``choose_runtime`` answers "kind or local?" for ``mco demo`` and ``mco drill run`` and says
why when it falls back to the local runtime, so nobody wonders what was tested.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from orchestrator.config import MCOConfig
from orchestrator.drills.fleet import LocalFleet
from orchestrator.errors import ConfigError, IntegrityError, ModelError
from orchestrator.local.base import CLOUDS
from orchestrator.model.bundle import Bundle, load_bundle

__all__ = ["Runtime", "choose_runtime", "docker_available", "local_fleet", "reference_bundle"]

Runtime = Literal["local", "kind"]


def docker_available() -> tuple[bool, str]:
    """Whether a Docker engine answers; the reason when not."""
    exe = shutil.which("docker")
    if exe is None:
        return False, "the docker CLI is not installed"
    try:
        proc = subprocess.run([exe, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"`docker info` failed: {exc}"
    if proc.returncode != 0:
        return False, "the Docker engine does not answer (`docker info`: " + \
            (proc.stderr.strip().splitlines() or ["no output"])[-1] + ")"
    return True, f"Docker {proc.stdout.strip()}"


def cluster_clouds(config: MCOConfig) -> list[str]:
    """Clouds of ``config`` whose cluster has an endpoint clients (and the router) can reach."""
    return [name for name, cloud in config.clouds.items() if cloud.cluster is not None and cloud.cluster.endpoint]


def kind_tooling() -> tuple[bool, str]:
    """Whether the kind and kubectl binaries that `make setup` builds are there."""
    from orchestrator.errors import ClusterError
    from orchestrator.kube.kind import kind_binary, kubectl_binary

    try:
        kind_binary()
        kubectl_binary()
    except ClusterError as exc:
        return False, exc.message + " (run `make setup`)"
    return True, "kind and kubectl are installed"


def choose_runtime(requested: str, config: MCOConfig, *, create_clusters: bool = False) -> tuple[Runtime, str | None]:
    """``requested`` is local, kind or auto; returns the runtime and, on a fallback, why.

    ``create_clusters`` (the demo): kind needs Docker and the kind tooling, the clusters are
    brought up on the way. Otherwise (a drill): kind needs Docker and clusters in the config.
    """
    if requested == "local":
        return "local", None
    if requested not in ("kind", "auto"):
        raise ConfigError(f"unknown runtime '{requested}'", hint="choose local, kind or auto")
    ok, why = docker_available()
    problem = None if ok else why
    if problem is None and create_clusters:
        ok, why = kind_tooling()
        problem = None if ok else why
    elif problem is None and len(cluster_clouds(config)) < 2:
        where = config.source or "the config"
        problem = (f"{where} names no reachable clusters (clouds with cluster.endpoint); "
                   "run `mco local up clusters` and pass --config mco.local.yaml")
    if problem is None:
        return "kind", None
    if requested == "kind":
        raise ConfigError(f"cannot use the kind clusters: {problem}",
                          hint="run `make setup` and `mco local up`, or use --runtime local")
    return "local", problem


def reference_bundle(cache_dir: Path, *, quiet: bool = True) -> tuple[Bundle, bool]:
    """The reference model, trained once into ``cache_dir`` and reused while it verifies.

    Returns the bundle and whether it was trained now.
    """
    from orchestrator.model.train import TrainSpec, train_bundle

    out = Path(cache_dir)
    if (out / "card.json").is_file():
        try:
            return load_bundle(out), False
        except (ModelError, IntegrityError):
            shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    return train_bundle(TrainSpec(), out), True


@contextmanager
def local_fleet(bundle: Bundle, root: Path, *, clouds: tuple[str, ...] = CLOUDS,
                pricing: dict[str, str] | None = None, entry: bool = False,
                router: Any = None) -> Iterator[LocalFleet]:
    """Three model servers (one per cloud name) serving ``bundle``; all stopped on exit.

    ``entry``: also a router per cloud and the global entry in front of them
    (``drills/local_entry.py``), for the drills that go through the entry; ``router`` is the
    config's ``router`` section, whose timings those routers take."""
    from orchestrator.local.runtime import LocalRuntime

    rt = LocalRuntime(root, clouds=clouds)
    try:
        rt.deploy(bundle)
        if entry:
            from orchestrator.drills.local_entry import local_entry_fleet

            with local_entry_fleet(rt, root / "entry", router=router) as fleet:
                yield fleet
        else:
            yield LocalFleet(rt, pricing)
    finally:
        rt.down()


def describe_fleet(fleet: Any) -> list[dict[str, Any]]:
    return [{"cloud": t.cloud, "url": t.url, "priority": t.priority, "pricing_key": t.pricing_key}
            for t in fleet.targets()]
