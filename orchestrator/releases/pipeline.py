"""The release pipeline: what ``mco deploy``, ``mco rollback`` and ``mco status`` do.

    deploy(cfg, bundle, clouds, settings)
        gate        the card's evaluation against gate.require (+ --require); --force records it
        lock        the service's deploy lock, before anything is built (a dry run takes none)
        image       the given local image (checked against the bundle), else built or reused
        publish     bundle to object stores, image to registries (``releases.publish``)
        targets     per cloud: the image reference its cluster can run and the digest recorded
        stage       ``kind load`` where the node lacks the image (asked of the node, not the history)
        apply, watch, record, roll back    ``releases.deployer`` (planning: ``releases.plan``)
    rollback(cfg, to=…, clouds=…)   which clouds go back, then ``releases.deployer.rollback_release``
    cloud_status(cfg, clouds)       what runs, read live, against the history (drift)

Nothing here prints. Progress goes to a ``DeployProgress`` the caller hands in: one line per
cloud, and notes for a person. Whatever the history says, a step is skipped only after
looking at the target: the node is asked whether it has the image, the registry whether it
holds the manifest, and an unchanged release is re-applied and watched, not assumed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.config import CloudConfig, MCOConfig
from orchestrator.errors import ConfigError, GateError, MCOError, ReleaseError
from orchestrator.kube.render import Resources, fetch_sources
from orchestrator.model.bundle import Bundle
from orchestrator.progress import ProgressFn, quiet
from orchestrator.releases.deployer import (
    CloudTarget,
    DeployResult,
    DeploySettings,
    KubeTarget,
    plan_diff,
    rollback_release,
)
from orchestrator.releases.images import LocalImage
from orchestrator.releases.publish import Published, destinations, publish
from orchestrator.releases.state import StateBackend, StateLock, open_history, state_backend

if TYPE_CHECKING:
    from orchestrator.releases.strategies import Strategy

__all__ = [
    "QUIET",
    "DeployProgress",
    "DryRun",
    "GateDecision",
    "RenderedCloud",
    "build_targets",
    "choose_image",
    "cloud_status",
    "cluster_clouds",
    "decide_gate",
    "deploy",
    "deploy_lock",
    "render_cloud",
    "rollback",
    "settings_for",
    "short_digest",
    "stage_images",
    "unfinished_release",
]

Obj = dict[str, Any]

# A render without a release or --image shows the shape with an obviously fake digest.
PLACEHOLDER_IMAGE = "example.invalid/mco/model@sha256:" + "0" * 64
PLACEHOLDER_DIGEST = "0" * 64


class DeployProgress(Protocol):
    """What a caller shows while the pipeline works."""

    def __call__(self, cloud: str, message: str, /) -> None: ...  # one cloud's current step

    def note(self, text: str) -> None: ...  # a remark for the person deploying


class _Quiet:
    def __call__(self, cloud: str, message: str) -> None:
        pass

    def note(self, text: str) -> None:
        pass


QUIET: DeployProgress = _Quiet()


def short_digest(digest: str | None, n: int = 12) -> str:
    """The first ``n`` hex digits of a digest or of an image reference by digest."""
    if not digest:
        return "-"
    text = str(digest)
    if "@" in text:
        text = text.split("@", 1)[1]
    return text.removeprefix("sha256:")[:n]


# ---------------------------------------------------------------- config to pipeline


def cluster_clouds(cfg: MCOConfig, names: list[str] | None) -> dict[str, CloudConfig]:
    """``{cloud: CloudConfig}`` of the chosen clouds (default: every cloud with a cluster)."""
    with_cluster = {n: c for n, c in cfg.clouds.items() if c.cluster is not None}
    if names is None:
        if not with_cluster:
            raise ConfigError(f"no cloud in {cfg.source or 'the config'} has a cluster",
                              hint="add clouds.<name>.cluster, or run `mco local up clusters` and pass --config mco.local.yaml")
        return with_cluster
    out = {}
    for name in names:
        cloud = cfg.cloud(name)
        if cloud.cluster is None:
            raise ConfigError(f"cloud '{name}' has no cluster configured",
                              hint=f"add clouds.{name}.cluster (context, namespace, endpoint)")
        out[name] = cloud
    return out


def settings_for(cfg: MCOConfig, *, replicas: int | None = None, timeout: float | None = None,
                 auto_rollback: bool | None = None, wait: float | None = None) -> DeploySettings:
    """The config's ``deploy`` section, with the command line's overrides."""
    d = cfg.deploy
    rollout_timeout = timeout if timeout is not None else d.rollout_timeout_s
    return DeploySettings(
        replicas=replicas or d.replicas,
        auto_rollback=d.auto_rollback if auto_rollback is None else auto_rollback,
        rollout_timeout_s=rollout_timeout,
        readiness_grace_s=min(60.0, rollout_timeout / 2),
        lock_wait_s=d.lock_wait_s if wait is None else wait,
        run_as_user=cfg.packaging.uid,
        resources=Resources(**d.resources.model_dump()),
    )


def deploy_lock(cfg: MCOConfig, settings: DeploySettings, purpose: str,
                backend: StateBackend | None = None) -> StateLock:
    """The service's deploy lock from the configured state backend (``state.backend``)."""
    return (backend or state_backend(cfg)).lock(wait_s=settings.lock_wait_s, purpose=purpose)


# ---------------------------------------------------------------- gate and image


@dataclass(frozen=True)
class GateDecision:
    summary: str | None  # None: no requirement to check
    forced: bool         # failed, deployed anyway (--force); the release records it


def decide_gate(cfg: MCOConfig, bundle: Bundle, require: list[str] | tuple[str, ...] = (), *,
                force: bool = False) -> GateDecision:
    """Check the card's evaluation against ``gate.require`` and ``require``; a failure raises
    ``GateError`` unless ``force``."""
    from orchestrator.model.gate import check_gate, parse_requirement

    texts = list(cfg.gate.require) + list(require)
    if not texts:
        return GateDecision(None, False)
    result = check_gate(bundle.card["evaluation"]["report"], [parse_requirement(t) for t in texts])
    summary = result.summary()
    if result.passed:
        return GateDecision(summary, False)
    if not force:
        raise GateError(f"{bundle.name} ({short_digest(bundle.digest)}) is not deployed: {summary}",
                        hint="improve the model, or pass --force to deploy anyway (the release records it)")
    return GateDecision(summary, True)


def choose_image(cfg: MCOConfig, bundle: Bundle, image: str | None, *, progress: ProgressFn = quiet) -> LocalImage:
    """The local image ``image`` (it must have been built from ``bundle``), else the bundle's
    own image, built or reused."""
    from orchestrator.releases.images import image_for_bundle, local_image

    if image is None:
        return image_for_bundle(cfg, bundle, progress=progress)
    img = local_image(image)
    if img.bundle_digest and img.bundle_digest.removeprefix("sha256:") != bundle.digest:
        raise ConfigError(f"image {image} was built for bundle {short_digest(img.bundle_digest)}, "
                          f"not {short_digest(bundle.digest)}",
                          hint="pass the bundle the image was built from, or omit --image to build it")
    return img


def build_targets(chosen: dict[str, CloudConfig], img: LocalImage, published: Published | None) -> list[CloudTarget]:
    """Per cloud, the image reference its cluster runs and the digest the release records."""
    from orchestrator.kube.render import overlay_for

    pushed = published.pushed_images() if published is not None else {}
    failed = published.failed() if published is not None else {}
    targets = []
    for name, cloud in chosen.items():
        cluster = cloud.cluster
        assert cluster is not None  # cluster_clouds chose only clouds with one
        overlay = overlay_for(cloud)
        if cluster.kind_cluster:
            # kind nodes get the image from `kind load`; the registry digest (when pushed) is what we record.
            digest = pushed[name].digest if name in pushed else img.image_id
            targets.append(CloudTarget(name, cluster, overlay, image_ref=img.image_id, image_digest=digest))
        elif name in pushed:
            targets.append(CloudTarget(name, cluster, overlay, image_ref=pushed[name].ref,
                                       image_digest=pushed[name].digest))
        elif name in failed or (published is None and cloud.registry is not None):
            # Not pushed (failed, or a dry run): the server validates the objects with the image ID.
            targets.append(CloudTarget(name, cluster, overlay, image_ref=img.image_id, image_digest=None))
        else:
            raise ConfigError(f"cloud '{name}' has a cluster that pulls images, but no registry to push to",
                              hint=f"add clouds.{name}.registry, or make the cluster a kind cluster (kind_cluster)")
    return targets


def stage_images(img: LocalImage, chosen: dict[str, CloudConfig], progress: DeployProgress = QUIET, *,
                 skip: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
    """``kind load`` the image into every chosen kind cluster whose node lacks it; ``{cloud: error}``.

    The node is asked each time: a cluster made anew has nothing, whatever the history says."""
    from orchestrator.releases.images import ensure_on_kind

    kind = {name: cloud.cluster.kind_cluster for name, cloud in chosen.items()
            if cloud.cluster is not None and cloud.cluster.kind_cluster and name not in skip}
    return ensure_on_kind(img, kind, progress)


# ---------------------------------------------------------------- deploy


@dataclass(frozen=True)
class DryRun:
    diffs: dict[str, dict[str, Any]]  # cloud -> {changed_objects, objects, diff} or {error}

    def summary(self) -> dict[str, Any]:
        return {"dry_run": True, "clouds": self.diffs}

    @property
    def ok(self) -> bool:
        return not any("error" in info for info in self.diffs.values())


def deploy(cfg: MCOConfig, bundle: Bundle, chosen: dict[str, CloudConfig], settings: DeploySettings, *,
           image: str | None = None, require: list[str] | tuple[str, ...] = (), force: bool = False,
           dry_run: bool = False, progress: DeployProgress = QUIET, strategy: str | None = None,
           ) -> DeployResult | DryRun:
    """Gate, lock, image, publish, stage, then apply with the release strategy (``strategy``,
    else ``deploy.strategy``; see ``releases.strategies``)."""
    from orchestrator.releases.strategies import strategy_class

    chosen_strategy = strategy_class(strategy or cfg.deploy.strategy)()  # an unknown name fails before any build

    if cfg.packaging.model_source == "fetch":  # refused here, before any build, if a pod could not fetch
        settings = replace(settings, fetch_sources=fetch_sources(cfg, list(chosen), bundle.total_bytes()))
    gate = decide_gate(cfg, bundle, require, force=force)
    if gate.forced:
        progress.note(f"gate forced: {gate.summary}")
    # Take the service lock before building or loading anything, so a second deploy started at the
    # same time fails (or queues with --wait) at once instead of after its build. A dry run changes
    # nothing and takes no lock.
    backend = state_backend(cfg)
    try:
        return _deploy_locked(cfg, bundle, chosen, settings, backend, gate, image=image, dry_run=dry_run,
                              progress=progress, strategy=chosen_strategy)
    finally:
        backend.close()


def _deploy_locked(cfg: MCOConfig, bundle: Bundle, chosen: dict[str, CloudConfig], settings: DeploySettings,
                   backend: StateBackend, gate: GateDecision, *, image: str | None, dry_run: bool,
                   progress: DeployProgress, strategy: Strategy) -> DeployResult | DryRun:
    from orchestrator.releases.strategies import DeployJob

    lock = deploy_lock(cfg, settings, "deploy", backend)
    with lock if not dry_run else nullcontext():
        img = choose_image(cfg, bundle, image, progress=progress)
        if dry_run:
            # The server renders the dry-run against the image ID; the image need not be anywhere yet.
            for cloud in chosen:
                progress(cloud, "server-side dry-run")
            return DryRun(plan_diff(build_targets(chosen, img, None), bundle.digest, settings))
        # Content-addressed: a redeploy transfers nothing. A cloud whose push fails is recorded as
        # failed; the others go on.
        published = None
        where = destinations(cfg, list(chosen))
        if where:
            published = publish(cfg, bundle, where, image=img, progress=progress)
            for text in published.notes:
                progress.note(text)
        targets = build_targets(chosen, img, published)
        failed = {c: ("PushFailed", m) for c, m in (published.failed() if published else {}).items()}
        store = backend.history()
        assert store is not None
        with store:
            load_errors = stage_images(img, chosen, progress, skip=set(failed))
            failed.update({c: ("ImageLoadFailed", m) for c, m in load_errors.items()})
            if cfg.router.in_cluster:  # the router next to the model in every cluster (releases/routers.py)
                from orchestrator.releases.routers import with_routers

                targets, router_errors = with_routers(cfg, chosen, targets, progress=progress)
                failed.update({c: ("RouterSetupFailed", m) for c, m in router_errors.items() if c not in failed})
            result = strategy.run(DeployJob(cfg, store, lock, targets, model_digest=bundle.digest,
                                            settings=settings, bundle_ref=bundle.ref, gate_forced=gate.forced,
                                            gate_summary=gate.summary, progress=progress,
                                            failed_before_apply=failed))
            _note_lagging(store, progress)
            return result


def _note_lagging(store: Any, progress: DeployProgress) -> None:
    """Say which state store missed a write (it is mended on the next lease or by verify --repair)."""
    state = store.state() if hasattr(store, "state") else {}
    if state.get("lagging"):
        progress.note(f"state store(s) {', '.join(state['lagging'])} missed history writes and lag; "
                      "`mco state verify --repair` mends them")


# ---------------------------------------------------------------- rollback


def rollback(cfg: MCOConfig, *, to: int | None, clouds: list[str] | None, settings: DeploySettings,
             progress: DeployProgress = QUIET) -> DeployResult:
    """Re-apply recorded manifests (release ``to``, or each cloud's previous release). Without
    ``clouds``: every configured cluster that has something in the history to go back to."""

    backend = state_backend(cfg)
    try:
        store = backend.history(create=False)
        if store is None:
            raise ReleaseError("there is no release history yet", hint="deploy first with `mco deploy BUNDLE`")
        return _rollback_with(cfg, store, backend, to=to, clouds=clouds, settings=settings, progress=progress)
    finally:
        backend.close()


def _rollback_with(cfg: MCOConfig, store: Any, backend: StateBackend, *, to: int | None, clouds: list[str] | None,
                   settings: DeploySettings, progress: DeployProgress) -> DeployResult:
    from orchestrator.kube.render import overlay_for

    with store:
        names = clouds
        if names is None:
            in_history = set(store.get(to).clouds) if to is not None else {c for c in store.iter_clouds()
                                                                              if store.current(c) is not None}
            names = [n for n, c in cfg.clouds.items() if c.cluster is not None and n in in_history]
            if not names:
                raise ReleaseError("no configured cluster has a release to roll back",
                                   hint="check --config; `mco history` lists the releases")
        chosen = cluster_clouds(cfg, names)
        clusters = {n: (c.cluster, overlay_for(c)) for n, c in chosen.items() if c.cluster is not None}
        result = rollback_release(store, deploy_lock(cfg, settings, "rollback", backend), clusters, to=to,
                                  settings=settings, progress=progress)
        _note_lagging(store, progress)
        return result


# ---------------------------------------------------------------- status and render


def cloud_status(cfg: MCOConfig, chosen: dict[str, CloudConfig]) -> dict[str, dict[str, Any]]:
    """Per cloud: the current release (history) and what runs (read live, in parallel).

    ``state`` is running, not deployed, unreachable, or drifted: the live Deployment serves
    another model than the history's current release."""
    from orchestrator.kube.render import APP_NAME

    store = open_history(cfg, create=False)
    current: dict[str, Any] = {}
    if store is not None:
        with store:
            current = {n: store.current(n) for n in chosen}

    def one(name: str) -> dict[str, Any]:
        cluster = chosen[name].cluster
        assert cluster is not None
        cur = current.get(name)
        row: dict[str, Any] = {"release": cur.release if cur else None, "image_digest": cur.image_digest if cur else None,
                               "model_digest": cur.model_digest if cur else None,
                               # where clients come in now: the config's, over the one recorded at deploy
                               # time (a cluster made anew, e.g. by `mco local up`, may have moved)
                               "endpoint": cluster.endpoint or (cur.endpoint if cur else None)}
        kube = KubeTarget(name, cluster)
        try:
            live = kube.live_summary(cluster.namespace, APP_NAME)
            row["ready_replicas"] = live.get("ready_replicas", 0)
            row["replicas"] = live.get("replicas")
            row["live_model_digest"] = live.get("model_digest")
            row["state"] = "running" if live.get("deployed") else "not deployed"
            if cur and live.get("deployed") and live.get("model_digest") != cur.model_digest:
                row["state"] = "drifted"
        except MCOError as exc:
            row["ready_replicas"] = None
            row["state"] = "unreachable"
            row["error"] = exc.message
        finally:
            kube.close()
        return row

    with ThreadPoolExecutor(max_workers=max(1, len(chosen))) as pool:
        return dict(zip(chosen, pool.map(one, chosen)))


def unfinished_release(cfg: MCOConfig) -> dict[str, Any] | None:
    """The newest release when it has not finished, and why (for ``mco status``).

    ``state`` is ``running`` while a process holds the deploy lock (named), ``interrupted``
    when nobody does: its deploy ended mid-way (killed with -9, its machine gone), so its
    unfinished clouds are in no known state until the next deploy marks them ``interrupted``.
    A waves deploy also says where it stopped (wave, step, weights) and what the routers'
    weights are now: a killed wave leaves its cloud at the step's share."""
    from orchestrator.releases.state.ops import lock_info
    from orchestrator.releases.store import CLOUD_FINAL

    store = open_history(cfg, create=False)
    if store is None:
        return None
    with store:
        newest = store.list(limit=1)
    if not newest or newest[0].status != "in_progress":
        return None
    rel = newest[0]
    out: dict[str, Any] = {"release": rel.number, "kind": rel.kind, "model_digest": rel.model_digest,
                           "clouds": {c: v.status for c, v in rel.clouds.items()}}
    try:
        lock = lock_info(cfg)
        out["state"] = "running" if lock["held"] and not lease_expired(
            lock.get("holder"), skew_s=cfg.state.clock_skew_s) else "interrupted"
        out["holder"] = lock.get("holder") or lock.get("ended_without_release")
    except MCOError as exc:
        out["state"], out["lock_error"] = "unknown", exc.message
    finished = [c for c, st in out["clouds"].items() if st in CLOUD_FINAL]
    unfinished = [c for c, st in out["clouds"].items() if st not in CLOUD_FINAL]
    doc = rel.analysis
    if doc and doc.get("waves"):
        wave = doc["waves"][-1]
        step = (wave.get("steps") or [None])[-1]
        position: dict[str, Any] = {
            "wave": wave["wave"], "of": len(doc.get("plan", {}).get("waves", [])), "clouds": wave["clouds"],
            "step": step.get("percent") if step else None, "weights": step.get("weights") if step else None,
            "usual_weights": doc.get("usual_weights")}
        if out["state"] != "running":
            position.update(_router_weights(cfg))
        out["waves"] = position
    out["message"] = _unfinished_message(out, finished, unfinished)
    return out


def lease_expired(holder: dict[str, Any] | None, *, skew_s: float = 0.0) -> bool:
    """Whether a lease's holder let it run out (``until`` past): a live deploy renews it, so
    an expired one was left by a deploy that ended without releasing it (objectstore state)."""
    from datetime import UTC, datetime, timedelta

    until = (holder or {}).get("until")
    if not until:
        return False
    try:
        end = datetime.fromisoformat(str(until))
    except ValueError:
        return False
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return datetime.now(UTC) > end + timedelta(seconds=skew_s)


def _router_weights(cfg: MCOConfig) -> dict[str, Any]:
    """The routers' weights now (the first router's), or why they could not be read."""
    if not cfg.deploy.routers:
        return {}
    from orchestrator.releases.strategies.waves import RouterTraffic, router_token

    try:
        traffic = RouterTraffic(cfg.deploy.routers, router_token(cfg), timeout_s=5.0)
        try:
            return {"router_weights": traffic.weights()}
        finally:
            traffic.close()
    except MCOError as exc:
        return {"router_error": exc.message}


def _unfinished_message(info: dict[str, Any], finished: list[str], unfinished: list[str]) -> str:
    n, state = info["release"], info["state"]
    holder = info.get("holder") or {}
    who = f"pid {holder.get('pid')}, since {holder.get('since')}" if holder else "no holder recorded"
    if state == "running":
        head = f"release {n} is being deployed now ({who})"
    elif state == "interrupted":
        head = (f"release {n} was interrupted: its {info['kind']} ended without finishing ({who}; killed, or its "
                "machine went away)")
    else:
        head = f"release {n} has not finished, and whether its deploy still runs is unknown ({info.get('lock_error')})"
    parts = [head]
    waves = info.get("waves")
    if waves:
        step = f", at the {waves['step']} % step" if waves.get("step") is not None else ", before its first step"
        parts.append(f"waves: stopped in wave {waves['wave']} of {waves['of']} ({', '.join(waves['clouds'])}){step}")
        now = waves.get("router_weights")
        usual = waves.get("usual_weights") or {}
        if now is not None:
            moved = {c: w for c, w in now.items() if c in usual and usual[c] != w}
            parts.append("the routers' weights are the usual ones" if not moved else
                         "the routers still hold the wave's weights: " + ", ".join(
                             f"{c} {w} (usual {usual[c]})" for c, w in moved.items()))
        elif waves.get("router_error"):
            parts.append(f"the routers' weights could not be read: {waves['router_error']}")
    statuses = info["clouds"]
    if finished:
        parts.append("finished: " + ", ".join(f"{c} {statuses[c]}" for c in finished))
    if unfinished:
        parts.append("not finished: " + ", ".join(f"{c} ({statuses[c]})" for c in unfinished))
    if state == "interrupted":
        parts.append("the next `mco deploy` or `mco rollback` marks the unfinished clouds interrupted"
                     + (" and a waves deploy gives the routers their usual weights back" if waves else ""))
    return "; ".join(parts)


@dataclass(frozen=True)
class RenderedCloud:
    overlay: str
    objects: list[Obj]
    notes: list[str]


def render_cloud(cfg: MCOConfig, cloud: str, *, model_digest: str | None = None, image: str | None = None,
                 replicas: int | None = None, overlay: str | None = None,
                 manifests: Path | None = None, bundle_bytes: int = 0) -> RenderedCloud:
    """The objects one cloud's cluster gets; values not given come from the cloud's current
    release, else placeholders (named in ``notes``). ``bundle_bytes`` sizes a fetch-mode pod's
    scratch volume (0: its minimum)."""
    from orchestrator.kube.render import OVERLAYS, ReleaseValues, overlay_for, render_release

    cloud_cfg = cfg.clouds.get(cloud)
    if cloud_cfg is None and overlay is None and cloud not in OVERLAYS:
        cfg.cloud(cloud)  # raises: names the configured clouds
    chosen_overlay = overlay or (overlay_for(cloud_cfg) if cloud_cfg is not None else cloud)
    cluster = cloud_cfg.cluster if cloud_cfg is not None else None
    current: dict[str, Any] = {}
    store = open_history(cfg, create=False)
    if store is not None:
        with store:
            current = store.current_cloud_values(cloud) or {}
    notes = []
    image_ref = image or current.get("image_ref")
    if image_ref is None:
        image_ref = PLACEHOLDER_IMAGE
        notes.append("image is a placeholder: pass --image, or deploy a release first")
    digest = model_digest or current.get("model_digest")
    if digest is None:
        digest = PLACEHOLDER_DIGEST
        notes.append("model digest is a placeholder: pass --model BUNDLE")
    values = ReleaseValues(
        image=image_ref, model_digest=digest, replicas=replicas or current.get("replicas") or cfg.deploy.replicas,
        namespace=cluster.namespace if cluster else "mco", node_port=cluster.node_port if cluster else None,
        cloud=cloud, release=current.get("release"), run_as_user=cfg.packaging.uid,
        resources=Resources(**cfg.deploy.resources.model_dump()),
        fetch=(fetch_sources(cfg, [cloud], bundle_bytes)[cloud]
               if cfg.packaging.model_source == "fetch" and cloud_cfg is not None else None),
        ingress_cidrs=tuple(cluster.ingress_cidrs) if cluster and cluster.ingress_cidrs is not None else None,
        load_balancer_source_ranges=tuple(cluster.load_balancer_source_ranges) if cluster else (),
    )
    return RenderedCloud(chosen_overlay, render_release(chosen_overlay, values, manifests_dir=manifests), notes)
