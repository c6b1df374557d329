"""Drills against Kubernetes clusters: the local kind clusters, or any cluster in the config.

Faults, per cloud:

* ``outage``: on kind, ``docker stop`` of the cluster's node container (the whole cluster
  goes away; ``docker start`` repairs it). On a remote cluster there is no node to stop, so
  the model Deployment is scaled to zero replicas and back.
* ``crash_pods``: every pod of the model Deployment is deleted with no grace period;
  Kubernetes starts new ones by itself.
* ``slow``: on kind, the model server processes in the cloud's node are stopped and
  continued on a duty cycle from the host (found through the node container's cgroup), so
  the model answers slowly but correctly; remote clusters cannot do this (CapabilityError).
* ``release``: ``mco deploy`` (gate, image, apply, watch, automatic rollback), after
  ``mco push`` of the bundle to every configured object store; a cloud whose push fails is
  not deployed and is reported with the push's reason.
* ``store_outage``: the cloud's local object-store emulator is stopped (SIGKILL) and
  started again by ``store_repair``.

Deploys go through the ``mco`` CLI, the same commands a user runs, which call the release
pipeline (``orchestrator.releases.pipeline``): the drill exercises the real path rather than a
copy of it, and in a process of its own, so a deploy's work does not stall the drill's own
clients and router in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from orchestrator.config import MCOConfig, load_config
from orchestrator.drills.fleet import FleetTarget
from orchestrator.errors import CapabilityError, ClusterError, ConfigError, MCOError, ProviderError
from orchestrator.local.base import STAND_IN_PRICING
from orchestrator.model.bundle import Bundle

__all__ = ["KindFleet", "kind_fleet"]

READY_TIMEOUT_S = 300.0


def _run(argv: list[str], *, timeout: float = 120.0, env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                              env={**os.environ, **env} if env else None)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClusterError(f"`{' '.join(argv[:3])} …` failed: {exc}") from exc


def _mco(args: list[str], *, timeout: float = 1800.0, env: dict[str, str] | None = None,
         ) -> tuple[int, dict[str, Any], str]:
    """Run an ``mco`` command with ``--output json``; returns (exit code, JSON, stderr)."""
    exe = str(Path(sys.executable).with_name("mco"))
    proc = _run([exe, *args, "--output", "json"], timeout=timeout, env=env)
    try:
        data = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        data = {"error": proc.stdout.strip()[-500:]}
    return proc.returncode, data, proc.stderr


class KindFleet:
    runtime = "kind"

    def __init__(self, cfg: MCOConfig, config_path: Path, *, local_ctx: Any = None) -> None:
        from orchestrator.local.base import LocalContext

        self.cfg = cfg
        self.config_path = config_path
        # where `mco local up` keeps the stand-ins' state (the storage emulators' pidfiles)
        self.local_ctx = local_ctx or LocalContext(config_path=config_path)
        self.clouds = tuple(n for n, c in cfg.clouds.items() if c.cluster is not None and c.cluster.endpoint)
        if len(self.clouds) < 2:
            raise ConfigError(f"{config_path} names fewer than two clusters with an endpoint",
                              hint="run `mco local up clusters` (kind), or add clouds.<name>.cluster.endpoint")
        self._scaled: dict[str, int] = {}
        self._slowed: dict[str, list[Any]] = {}

    # ---- what the router sees -------------------------------------------------------------

    def targets(self) -> list[FleetTarget]:
        ordered = sorted(enumerate(self.clouds), key=lambda ic: (self.cfg.clouds[ic[1]].priority, ic[0]))
        return [FleetTarget(name, str(self.cfg.clouds[name].cluster.endpoint), rank,  # type: ignore[union-attr]
                            self.cfg.clouds[name].pricing_key or STAND_IN_PRICING.get(name))
                for rank, (_, name) in enumerate(ordered)]

    def _cluster(self, cloud: str) -> Any:
        if cloud not in self.clouds:
            raise ConfigError(f"cloud '{cloud}' has no cluster in {self.config_path}",
                              hint=f"choose from: {', '.join(self.clouds)}")
        return self.cfg.clouds[cloud].cluster

    def _kubectl(self, cloud: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        from orchestrator.kube.kind import kubectl_binary

        cluster = self._cluster(cloud)
        argv = [kubectl_binary(), "--context", cluster.context, "-n", cluster.namespace]
        if cluster.kubeconfig:
            argv += ["--kubeconfig", str(cluster.kubeconfig)]
        return _run(argv + list(args), timeout=timeout)

    def _deployment(self, cloud: str) -> dict[str, Any]:
        proc = self._kubectl(cloud, "get", "deployments", "-o", "json")
        if proc.returncode != 0:
            raise ClusterError(f"cannot list the Deployments of {cloud}: {proc.stderr.strip()}")
        # the model's, not the router's that `router.in_cluster` runs beside it
        items = [i for i in json.loads(proc.stdout).get("items", []) if i["metadata"]["name"] != "mco-router"]
        if not items:
            raise ClusterError(f"{cloud} runs no model Deployment", hint="deploy first (`mco deploy`)")
        return dict(items[0])

    # ---- the routers in the clusters and the global entry (drills/entry.py) ---------------

    def entry_url(self) -> str:
        """The local global entry `mco local up global-entry` started (HAProxy on loopback)."""
        from orchestrator.local.global_entry import GlobalEntry, GlobalEntryStandIn

        entry = GlobalEntry(self.local_ctx.dir_for(GlobalEntryStandIn.name), [])
        if not entry.running():
            raise ConfigError("the global entry is not running",
                              hint="`mco local up` starts it (with the clusters' router ports in mco.local.yaml); "
                                   "run the drill from the directory where you ran it")
        return entry.url

    def entry_routers(self) -> Any:
        from orchestrator.drills.entry import EntryRouters
        from orchestrator.releases.routers import _token

        if not self.cfg.router.in_cluster:
            raise ConfigError(f"this drill goes through the routers in the clusters, and {self.config_path} "
                              "does not run them (router.in_cluster is off)",
                              hint="set router.in_cluster: true (`mco local up clusters` writes it for clusters "
                                   "that publish a router port)")
        urls = [u for name in self.clouds for u in self.cfg.clouds[name].router_urls]
        if not urls:
            raise ConfigError("no cloud lists its routers (clouds.<cloud>.router_urls)",
                              hint="make the clusters again with `mco local down clusters && mco local up clusters`")
        return EntryRouters(urls, _token(self.cfg))

    def crash_routers(self, cloud: str) -> str:
        selector = "app.kubernetes.io/name=mco-router"
        proc = self._kubectl(cloud, "delete", "pods", "-l", selector, "--grace-period=0", "--force", "--wait=false")
        if proc.returncode != 0:
            raise ClusterError(f"cannot delete the router pods of {cloud}: {proc.stderr.strip()}")
        return f"deleted the router pods on {cloud} ({selector})"

    def wait_serving(self, cloud: str, timeout: float = READY_TIMEOUT_S) -> None:
        url = f"{self._cluster(cloud).endpoint}/readyz"
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                resp = httpx.get(url, timeout=2.0)
                if resp.status_code == 200:
                    return
                last = f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.5)
        raise ClusterError(f"{cloud} did not serve {url} within {timeout:.0f} s ({last})")

    # ---- faults ---------------------------------------------------------------------------

    def outage(self, cloud: str) -> str:
        cluster = self._cluster(cloud)
        if cluster.kind_cluster:
            node = f"{cluster.kind_cluster}-control-plane"
            proc = _run(["docker", "stop", "--time", "0", node], timeout=60)
            if proc.returncode != 0:
                raise ClusterError(f"docker stop {node} failed: {proc.stderr.strip()}")
            return f"docker stop {node}"
        dep = self._deployment(cloud)
        name = dep["metadata"]["name"]
        self._scaled[cloud] = int(dep["spec"].get("replicas") or 1)
        proc = self._kubectl(cloud, "scale", f"deployment/{name}", "--replicas=0")
        if proc.returncode != 0:
            raise ClusterError(f"cannot scale {name} on {cloud} to zero: {proc.stderr.strip()}")
        return f"scaled deployment/{name} on {cloud} to 0 replicas"

    def repair(self, cloud: str) -> str:
        cluster = self._cluster(cloud)
        if cluster.kind_cluster:
            node = f"{cluster.kind_cluster}-control-plane"
            proc = _run(["docker", "start", node], timeout=120)
            if proc.returncode != 0:
                raise ClusterError(f"docker start {node} failed: {proc.stderr.strip()}")
            self.wait_serving(cloud)
            return f"docker start {node}; serving again"
        dep = self._deployment(cloud)
        name = dep["metadata"]["name"]
        replicas = self._scaled.pop(cloud, 2)
        proc = self._kubectl(cloud, "scale", f"deployment/{name}", f"--replicas={replicas}")
        if proc.returncode != 0:
            raise ClusterError(f"cannot scale {name} on {cloud} back: {proc.stderr.strip()}")
        self.wait_serving(cloud)
        return f"scaled deployment/{name} on {cloud} back to {replicas}"

    def crash_pods(self, cloud: str) -> str:
        dep = self._deployment(cloud)
        labels = dep["spec"]["selector"].get("matchLabels", {})
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        proc = self._kubectl(cloud, "delete", "pods", "-l", selector, "--grace-period=0", "--force", "--wait=false")
        if proc.returncode != 0:
            raise ClusterError(f"cannot delete the pods of {cloud}: {proc.stderr.strip()}")
        return f"deleted the pods of deployment/{dep['metadata']['name']} on {cloud} ({selector})"

    def _node(self, cloud: str) -> str:
        cluster = self._cluster(cloud)
        if not cluster.kind_cluster:
            raise CapabilityError(f"the latency drill cannot slow down {cloud}: it is not a kind cluster",
                                  hint="run it against the local kind clusters")
        return f"{cluster.kind_cluster}-control-plane"

    def model_pids(self, cloud: str) -> list[int]:
        """Host pids of the model servers running in the cloud's kind node.

        A pod's processes live in the node container's cgroup subtree, which the host's
        /proc shows with the container's ID in the path."""
        node = self._node(cloud)
        proc = _run(["docker", "inspect", "-f", "{{.Id}}", node], timeout=30)
        if proc.returncode != 0:
            raise ClusterError(f"cannot inspect {node}: {proc.stderr.strip()}")
        container_id = proc.stdout.strip()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if container_id not in (entry / "cgroup").read_text():
                    continue
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"orchestrator.serving" in cmdline or b"orchestrator.packaging.startup" in cmdline:
                pids.append(int(entry.name))
        return pids

    def slow(self, cloud: str) -> str:
        """Throttle the cloud's model servers: SIGSTOP 80 ms of every 100 ms, from the host.

        Cutting the node's CPU quota instead would starve its kubelet and API server too, and
        a failing readiness probe turns "slow" into "down"."""
        from orchestrator.local.runtime import DutyCycle

        pids = self.model_pids(cloud)
        if not pids:
            raise ClusterError(f"no model server process found in {self._node(cloud)}",
                               hint="is the model deployed there? (`mco status`)")
        self.unslow(cloud)
        cycles = [DutyCycle(pid, stopped_share=0.8, period=0.1) for pid in pids]
        for cycle in cycles:
            cycle.start()
        self._slowed[cloud] = cycles
        return f"throttled {len(pids)} model server process(es) in {self._node(cloud)} (SIGSTOP 80 ms of every 100 ms)"

    def unslow(self, cloud: str) -> str:
        for cycle in self._slowed.pop(cloud, []):
            cycle.stop()
        return f"stopped throttling {cloud}"

    # ---- releases and storage -------------------------------------------------------------

    def _storage_clouds(self) -> list[str]:
        return [c for c in self.clouds if self.cfg.clouds[c].storage is not None]

    def stage(self, bundle: Bundle) -> str:
        # Three "clouds" share this machine's cores: an image build and three `kind load`s during
        # the drill would starve every model server at once, which no real cloud's serving feels.
        # The pipeline's own image and staging steps (what `mco deploy` does first), so the
        # release below finds the image ready.
        from orchestrator.releases.pipeline import choose_image, stage_images

        image = choose_image(self.cfg, bundle, None)
        nodes = [c for c in self.clouds if self._cluster(c).kind_cluster]
        errors = stage_images(image, {c: self.cfg.clouds[c] for c in self.clouds})
        if errors:
            raise ClusterError("could not load the release's image: " + "; ".join(f"{c}: {e}" for c, e in errors.items()))
        return f"built {image.image_id[:19]}… and loaded it into {', '.join(nodes) or 'no node'}"

    def release(self, bundle: Bundle, clouds: tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
        chosen = list(clouds or self.clouds)
        before = {c: self.serving_digest(c) for c in chosen}
        out: dict[str, dict[str, Any]] = {}
        if self._storage_clouds():
            only = [arg for c in chosen if c in self._storage_clouds() for arg in ("--cloud", c)]
            code, pushed, err = _mco(["push", str(bundle.path), "--config", str(self.config_path), *only])
            for cloud, res in (pushed.get("clouds") or {}).items():
                if isinstance(res, dict) and res.get("error"):
                    out[cloud] = {"ok": False, "digest": bundle.digest, "serving_digest": before.get(cloud),
                                  "reason": f"push failed: {res['error']}", "rolled_back": False}
            if code != 0 and not out:
                raise ProviderError(f"mco push failed: {pushed.get('error') or err.strip()[-400:]}")
        deploy_to = [c for c in chosen if c not in out]
        if deploy_to:
            code, result, err = _mco(["deploy", str(bundle.path), "--config", str(self.config_path),
                                      "--clouds", ",".join(deploy_to)])
            clouds_result = result.get("clouds") or {}
            if not clouds_result:
                raise ClusterError(f"mco deploy failed: {result.get('error') or err.strip()[-400:]}")
            for cloud in deploy_to:
                res = clouds_result.get(cloud, {})
                status = res.get("status")
                out[cloud] = {"ok": status == "deployed", "digest": bundle.digest,
                              "serving_digest": self.serving_digest(cloud),
                              "reason": " ".join(str(res.get(k)) for k in ("reason", "detail") if res.get(k)),
                              "rolled_back": status == "rolled_back", "status": status}
        return out

    def waves_release(self, bundle: Bundle, *, router_url: str, token: str,
                      analysis: dict[str, Any]) -> dict[str, Any]:
        """``mco deploy BUNDLE --strategy waves`` shifting traffic on the router at
        ``router_url`` and judged by ``analysis`` (the config's ``analysis`` section); returns
        the deploy's JSON (its ``waves`` record), whether the waves passed or stopped.

        The deploy reads its routers and analysis from a copy of the config with those two
        changed, written beside it (relative paths in it resolve as before), removed after."""
        import yaml

        data = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
        data.setdefault("deploy", {})["routers"] = [router_url]
        data["analysis"] = {**(data.get("analysis") or {}), **analysis}
        derived = self.config_path.with_name(f".{self.config_path.stem}.waves-drill-{os.getpid()}.yaml")
        derived.write_text("# written by an mco drill for one waves deploy; removed when it ends\n"
                           + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        try:
            code, result, err = _mco(["deploy", str(bundle.path), "--strategy", "waves", "--config", str(derived)],
                                     env={self.cfg.router.token_env: token})
        finally:
            derived.unlink(missing_ok=True)
        if not result.get("waves"):
            raise ClusterError(f"mco deploy --strategy waves did not run its waves (exit {code}): "
                               f"{result.get('error') or err.strip()[-400:]}",
                               hint=str(result.get("hint") or "see `mco history --output json`"))
        return result

    def _storage(self) -> tuple[Any, Any]:
        from orchestrator.local.storage import StorageStandIn

        return StorageStandIn(), self.local_ctx

    def store_outage(self, cloud: str) -> str:
        if self.cfg.clouds[cloud].storage is None:
            raise CapabilityError(f"{cloud} has no object store in {self.config_path}",
                                  hint="run `mco local up storage`")
        stand_in, ctx = self._storage()
        stand_in.stop(ctx, cloud, kill=True)
        return f"killed the {cloud} object-store emulator"

    def store_repair(self, cloud: str) -> str:
        stand_in, ctx = self._storage()
        stand_in.start(ctx, cloud)
        return f"started the {cloud} object-store emulator again"

    def half_written(self, cloud: str, digest: str) -> list[str]:
        """Pull ``digest`` from the cloud (after its store is back): a bundle that is visible
        but does not verify is half-written; absent or whole is fine."""
        from orchestrator.artifacts.pull import pull_from_provider
        from orchestrator.errors import IntegrityError, NotFound
        from orchestrator.providers.loader import get_provider

        if self.cfg.clouds[cloud].storage is None:
            return []
        provider = get_provider(cloud, self.cfg.clouds[cloud])
        with tempfile.TemporaryDirectory() as tmp:
            try:
                pull_from_provider(provider, None, digest, Path(tmp) / "b")
            except NotFound:
                return []
            except IntegrityError as exc:
                return [exc.message]
            except MCOError as exc:
                return [f"cannot tell: {exc.message}"]
        return []

    def serving_digest(self, cloud: str) -> str | None:
        try:
            resp = httpx.get(f"{self._cluster(cloud).endpoint}/readyz", timeout=3.0)
            return str(resp.json().get("model_digest")) if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None


def _config_path(cfg: MCOConfig) -> Path:
    if cfg.source is None:
        raise ConfigError("the kind runtime needs a config file naming the clusters",
                          hint="pass --config mco.local.yaml (written by `mco local up`)")
    return Path(cfg.source)


@contextmanager
def kind_fleet(cfg: MCOConfig, *, bundle: Bundle | None = None, progress: Callable[[str], None] | None = None,
               local_ctx: Any = None) -> Iterator[tuple[KindFleet, Bundle]]:
    """The clusters of ``cfg`` serving ``bundle`` (default: the reference model), deployed
    with ``mco deploy`` (a no-op when they already run it as recorded). Nothing is torn down
    afterwards: the clusters are the user's."""
    from orchestrator.drills.environments import reference_bundle

    say = progress or (lambda _m: None)
    path = _config_path(cfg)
    cfg = load_config(path)
    fleet = KindFleet(cfg, path, local_ctx=local_ctx)
    if bundle is None:
        bundle, _ = reference_bundle(Path(cfg.project.state_dir) / "drills" / "reference-model")
    # Always through `mco deploy`, even when the clusters already serve the bundle: the
    # release must be in *this* config's history, or a failed release in the drill would
    # have nothing to roll back to. When history and clusters agree it is a no-op.
    say(f"deploying {bundle.ref} to {', '.join(fleet.clouds)} (mco deploy)")
    results = fleet.release(bundle)
    failed = {c: r["reason"] for c, r in results.items() if not r["ok"]}
    if failed:
        raise ClusterError("the drill needs every cloud serving; the deploy failed on "
                           + "; ".join(f"{c}: {m}" for c, m in failed.items()),
                           hint="fix those clusters (`mco local status`, `mco status`), then run the drill again")
    for cloud in fleet.clouds:
        fleet.wait_serving(cloud, timeout=120)
    yield fleet, bundle
