"""``mco render``, ``mco deploy``, ``mco rollback``, ``mco history``, ``mco status``.

The commands are thin: rendering lives in ``orchestrator.kube.render``, applying and
watching in ``orchestrator.kube``, the release record, lock and rollback logic in
``orchestrator.releases``.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from orchestrator.cli._common import ConfigOpt, OutputFormat, OutputOpt, compact_table, console, emit, err_console
from orchestrator.errors import ConfigError

__all__ = ["register"]

# A render without a release or --image shows the shape with an obviously fake digest.
PLACEHOLDER_IMAGE = "example.invalid/mco/model@sha256:" + "0" * 64
PLACEHOLDER_DIGEST = "0" * 64

CloudsOpt = Annotated[str | None, typer.Option("--clouds", help="comma-separated clouds (default: every cloud with a cluster)")]


def _split_clouds(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise ConfigError("--clouds is empty", hint="name at least one cloud, e.g. --clouds aws,gcp")
    return names


def render_cmd(
    cloud: Annotated[str, typer.Option("--cloud", help="cloud whose cluster the objects are for, e.g. gcp")],
    model: Annotated[Path | None, typer.Option("--model", help="bundle directory whose digest to render")] = None,
    image: Annotated[str | None, typer.Option("--image", help="image by digest: REPO@sha256:… or sha256:<image id>")] = None,
    replicas: Annotated[int | None, typer.Option(help="replicas (default: deploy.replicas in the config)")] = None,
    overlay: Annotated[str | None, typer.Option(help="aws, gcp, azure or kind (default: from the cloud's config)")] = None,
    manifests: Annotated[Path | None, typer.Option(help="manifests directory (default: the source tree's)")] = None,
    config: ConfigOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Print the Kubernetes objects one cloud's cluster gets (YAML, or JSON with --output json).

    Values not given come from the cloud's current release, else placeholders.
    """
    from orchestrator.config import load_config
    from orchestrator.kube.render import (
        OVERLAYS,
        ReleaseValues,
        Resources,
        dump_yaml,
        fetch_sources,
        overlay_for,
        render_release,
    )
    from orchestrator.releases.store import open_store

    cfg = load_config(config)
    cloud_cfg = cfg.clouds.get(cloud)
    if cloud_cfg is None and overlay is None and cloud not in OVERLAYS:
        cfg.cloud(cloud)  # raises: names the configured clouds
    chosen_overlay = overlay or (overlay_for(cloud_cfg) if cloud_cfg is not None else cloud)
    cluster = cloud_cfg.cluster if cloud_cfg is not None else None

    current: dict[str, Any] = {}
    store = open_store(cfg, create=False)
    if store is not None:
        with store:
            current = store.current_cloud_values(cloud) or {}
    model_digest = current.get("model_digest")
    bundle_bytes = 0  # unknown without --model: the fetch-mode scratch volume gets its minimum
    if model is not None:
        from orchestrator.model.bundle import load_bundle

        loaded = load_bundle(model)
        model_digest, bundle_bytes = loaded.digest, loaded.total_bytes()
    image_ref = image or current.get("image_ref")
    notes = []
    if image_ref is None:
        image_ref = PLACEHOLDER_IMAGE
        notes.append("image is a placeholder: pass --image, or deploy a release first")
    if model_digest is None:
        model_digest = PLACEHOLDER_DIGEST
        notes.append("model digest is a placeholder: pass --model BUNDLE")
    values = ReleaseValues(
        image=image_ref, model_digest=model_digest,
        replicas=replicas or current.get("replicas") or cfg.deploy.replicas,
        namespace=cluster.namespace if cluster else "mco",
        node_port=cluster.node_port if cluster else None,
        cloud=cloud, release=current.get("release"), run_as_user=cfg.packaging.uid,
        resources=Resources(**cfg.deploy.resources.model_dump()),
        fetch=(fetch_sources(cfg, [cloud], bundle_bytes)[cloud]
               if cfg.packaging.model_source == "fetch" and cloud_cfg is not None else None),
        ingress_cidrs=tuple(cluster.ingress_cidrs) if cluster and cluster.ingress_cidrs is not None else None,
        load_balancer_source_ranges=tuple(cluster.load_balancer_source_ranges) if cluster else (),
    )
    objs = render_release(chosen_overlay, values, manifests_dir=manifests)
    for note in notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False)
    if output == OutputFormat.json:
        emit({"cloud": cloud, "overlay": chosen_overlay, "objects": objs}, output)
    else:
        sys.stdout.write(dump_yaml(objs))


# ---------------------------------------------------------------- shared plumbing


def _cluster_clouds(cfg: Any, names: list[str] | None) -> dict[str, Any]:
    """``{cloud: CloudConfig}`` of the chosen clouds, each with a cluster."""
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


def _settings(cfg: Any, *, replicas: int | None = None, timeout: float | None = None,
              auto_rollback: bool | None = None, wait: float | None = None) -> Any:
    from orchestrator.kube.render import Resources
    from orchestrator.releases.deployer import DeploySettings

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


def _lock(cfg: Any, settings: Any, purpose: str) -> Any:
    from orchestrator.releases.lock import DeployLock
    from orchestrator.releases.store import state_dir_for

    return DeployLock(state_dir_for(cfg), cfg.project.name, wait_s=settings.lock_wait_s, purpose=purpose)


class _CloudProgress:
    """One live line per cloud (rich), or nothing for --output json."""

    def __init__(self, clouds: list[str], enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        if enabled:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[cloud]:<8}"),
                                      TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console)
            for cloud in clouds:
                self._tasks[cloud] = self._progress.add_task("waiting", cloud=cloud, total=None)

    def __call__(self, cloud: str, message: str) -> None:
        if self._progress is not None and cloud in self._tasks:
            self._progress.update(self._tasks[cloud], description=message)

    def __enter__(self) -> "_CloudProgress":
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()


_STATUS_STYLE = {"deployed": "green", "rolled_back": "yellow", "failed": "red", "interrupted": "red",
                 "partial": "yellow", "in_progress": "cyan", "pending": "cyan", "applying": "cyan"}


def _styled(status: str | None) -> str:
    status = status or "-"
    return f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]"


def _mark(cloud: dict[str, Any]) -> str:
    """One cloud's outcome in a release, in a few characters (the history table's legend)."""
    status = cloud.get("status")
    text = {"deployed": "✓", "failed": "✗", "rolled_back": f"↩{cloud.get('rolled_back_to') or ''}"}.get(
        str(status), str(status or "-"))
    return f"[{_STATUS_STYLE.get(str(status), 'white')}]{text}[/]"


def _short(digest: str | None, n: int = 12) -> str:
    if not digest:
        return "-"
    text = str(digest)
    if "@" in text:
        text = text.split("@", 1)[1]
    return text.removeprefix("sha256:")[:n]


def _render_release_result(data: dict[str, Any]) -> None:
    title = f"release {data['release']} ({data.get('kind', 'deploy')}): {data['status']}"
    if data.get("unchanged"):
        title += " -- unchanged"
    table = Table(title=title)
    for col in ("cloud", "status", "ready", "image", "endpoint", "reason"):
        table.add_column(col)
    for cloud, c in data["clouds"].items():
        reason = c.get("reason") or ""
        if c.get("rolled_back_to") is not None:
            reason += f" -> rolled back to {c['rolled_back_to']}"
        if c.get("detail") and c.get("status") != "deployed":
            reason += f"\n{c['detail']}"
        table.add_row(cloud, _styled(c.get("status")), str(c.get("ready_replicas") if c.get("ready_replicas") is not None else "-"),
                      _short(c.get("image_digest")), c.get("endpoint") or "-", reason)
    console.print(table)
    for note in data.get("notes", []):
        console.print(f"[dim]{note}[/]")


# ---------------------------------------------------------------- deploy


def deploy_cmd(
    bundle_dir: Annotated[Path, typer.Argument(help="model bundle directory (from `mco model train`)")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show the diff against what is live; change nothing")] = False,
    force: Annotated[bool, typer.Option("--force", help="deploy even if the model fails the evaluation gate (recorded)")] = False,
    clouds: CloudsOpt = None,
    require: Annotated[list[str] | None, typer.Option("--require", "-r", help='extra gate requirement, e.g. "macro_f1>=0.95"')] = None,
    image: Annotated[str | None, typer.Option("--image", help="deploy this already-built local image instead of packaging")] = None,
    replicas: Annotated[int | None, typer.Option(help="replicas per cluster (default: deploy.replicas)")] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds to wait for each rollout (default: deploy.rollout_timeout_s)")] = None,
    auto_rollback: Annotated[bool | None, typer.Option("--auto-rollback/--no-auto-rollback",
                                                        help="a cloud whose rollout fails goes back to its previous release")] = None,
    wait: Annotated[float | None, typer.Option("--wait", help="seconds to wait for another deploy's lock (default: fail at once)")] = None,
    config: ConfigOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Deploy a model to every cloud's cluster: gate, image, apply, watch, record."""
    from orchestrator.config import load_config
    from orchestrator.errors import GateError
    from orchestrator.model.bundle import load_bundle
    from orchestrator.model.gate import check_gate, parse_requirement

    cfg = load_config(config)
    chosen = _cluster_clouds(cfg, _split_clouds(clouds))
    settings = _settings(cfg, replicas=replicas, timeout=timeout, auto_rollback=auto_rollback, wait=wait)
    bundle = load_bundle(bundle_dir)  # verifies every digest: a tampered bundle stops here
    if cfg.packaging.model_source == "fetch":  # refused here, before any build, if a pod could not fetch
        import dataclasses

        from orchestrator.kube.render import fetch_sources

        settings = dataclasses.replace(settings, fetch_sources=fetch_sources(cfg, chosen, bundle.total_bytes()))

    texts = list(cfg.gate.require) + list(require or [])
    gate_summary, gate_forced = None, False
    if texts:
        result = check_gate(bundle.card["evaluation"]["report"], [parse_requirement(t) for t in texts])
        gate_summary = result.summary()
        if not result.passed:
            if not force:
                raise GateError(f"{bundle.name} ({_short(bundle.digest)}) is not deployed: {gate_summary}",
                                hint="improve the model, or pass --force to deploy anyway (the release records it)")
            gate_forced = True
            err_console.print(f"[yellow]gate forced:[/] {gate_summary}", highlight=False)

    # Take the service lock before building or loading anything, so a second deploy started at the
    # same time fails (or queues with --wait) at once instead of after its build. A dry run changes
    # nothing and takes no lock.
    lock = _lock(cfg, settings, "deploy")
    with lock if not dry_run else nullcontext():
        _deploy_locked(cfg, bundle, chosen, settings, lock, image=image, dry_run=dry_run, gate_forced=gate_forced,
                       gate_summary=gate_summary, output=output)


def _deploy_locked(cfg: Any, bundle: Any, chosen: dict[str, Any], settings: Any, lock: Any, *, image: str | None,
                   dry_run: bool, gate_forced: bool, gate_summary: str | None, output: OutputFormat) -> None:
    from orchestrator.kube.render import overlay_for
    from orchestrator.releases.deployer import CloudTarget, deploy_release, plan_diff
    from orchestrator.releases.images import ensure_on_kind, image_for_bundle, local_image
    from orchestrator.releases.store import open_store

    table = output == OutputFormat.table
    if image is None:
        img = image_for_bundle(cfg, bundle, show_progress=table)
    else:
        img = local_image(image)
        if img.bundle_digest and img.bundle_digest.removeprefix("sha256:") != bundle.digest:
            raise ConfigError(f"image {image} was built for bundle {_short(img.bundle_digest)}, not {_short(bundle.digest)}",
                              hint="pass the bundle the image was built from, or omit --image to build it")

    # Push the bundle and the image to every chosen cloud that has storage / a registry (what
    # `mco push` does; content-addressed, so a redeploy transfers nothing). A cloud whose push
    # fails is recorded as failed; the others go on. A dry run pushes nothing.
    push_errors: dict[str, str] = {}
    pushed: dict[str, Any] = {}
    if not dry_run:
        push_errors, pushed = _push(cfg, bundle, img, chosen, show_progress=table)

    targets = []
    kind_clusters = {}
    for name, cloud in chosen.items():
        overlay = overlay_for(cloud)
        if cloud.cluster.kind_cluster:
            # kind nodes get the image from `kind load`; the registry digest (when pushed) is what we record.
            kind_clusters[name] = cloud.cluster.kind_cluster
            digest = pushed[name].digest if name in pushed else img.image_id
            targets.append(CloudTarget(name, cloud.cluster, overlay, image_ref=img.image_id, image_digest=digest))
        elif name in pushed:
            targets.append(CloudTarget(name, cloud.cluster, overlay, image_ref=pushed[name].ref,
                                       image_digest=pushed[name].digest))
        elif name in push_errors:
            targets.append(CloudTarget(name, cloud.cluster, overlay, image_ref=img.image_id, image_digest=None))
        else:
            raise ConfigError(f"cloud '{name}' has a cluster that pulls images, but no registry to push to",
                              hint=f"add clouds.{name}.registry, or make the cluster a kind cluster (kind_cluster)")

    if dry_run:
        # The server renders the dry-run against the image ID; the image need not be on the node yet.
        with _CloudProgress(list(chosen), enabled=table) as progress:
            for cloud in chosen:
                progress(cloud, "server-side dry-run")
            diffs = plan_diff(targets, bundle.digest, settings)
        _emit_dry_run(diffs, output)
        return
    store = open_store(cfg)
    assert store is not None
    with store, _CloudProgress(list(chosen), enabled=table) as progress:
        # A node whose current release already runs this image ID has it (pods in use keep it).
        running = {c for c in kind_clusters if (cur := store.current(c)) is not None and cur.image_ref == img.image_id}
        load_errors = ensure_on_kind(img, {c: k for c, k in kind_clusters.items()
                                           if c not in push_errors and c not in running}, progress)
        failed = {c: ("PushFailed", m) for c, m in push_errors.items()}
        failed.update({c: ("ImageLoadFailed", m) for c, m in load_errors.items()})
        result_ = deploy_release(store, lock, targets, model_digest=bundle.digest,
                                 settings=settings, bundle_ref=bundle.ref, gate_forced=gate_forced,
                                 gate_summary=gate_summary, progress=progress, failed_before_apply=failed)
    data = result_.summary()
    emit(data, output, _render_release_result)
    if data["status"] != "deployed":
        raise typer.Exit(1)


def _push(cfg: Any, bundle: Any, img: Any, chosen: dict[str, Any], *, show_progress: bool) -> tuple[dict[str, str], dict[str, Any]]:
    """Bundle to each chosen cloud's storage, image to each one's registry: ``(errors, pushed images)``."""
    from orchestrator.errors import MCOError

    errors: dict[str, str] = {}
    pushed: dict[str, Any] = {}
    with_storage = [n for n, c in chosen.items() if c.storage is not None]
    if with_storage:
        from orchestrator.artifacts.push import push_bundle

        for name, result in push_bundle(cfg, bundle, with_storage).items():
            if not result.ok:
                errors[name] = f"bundle push failed: {result.error.message if result.error else 'unknown error'}"
    with_registry = [n for n, c in chosen.items() if c.registry is not None and n not in errors]
    if with_registry:
        if img.name.startswith("sha256:") or ":" not in img.name.rsplit("/", 1)[-1]:
            err_console.print(f"[yellow]note:[/] {img.name} has no name:tag, so it is not pushed to registries",
                              highlight=False)
            return errors, pushed
        from orchestrator.packaging.publish import configured_registries, push_image

        pushes = push_image(img.name, configured_registries(cfg, with_registry), show_progress=show_progress)
        for name, result in pushes.results.items():
            if isinstance(result, MCOError):
                errors[name] = f"image push failed: {result.message}"
            else:
                pushed[name] = result
    return errors, pushed


def _emit_dry_run(diffs: dict[str, dict[str, Any]], output: OutputFormat) -> None:
    data = {"dry_run": True, "clouds": diffs}

    def render(d: dict[str, Any]) -> None:
        from rich.syntax import Syntax

        for cloud, info in d["clouds"].items():
            if "error" in info:
                console.print(f"[bold]{cloud}[/]: [red]{info['error']}[/]")
                continue
            console.print(f"[bold]{cloud}[/]: {info['changed_objects']} of {info['objects']} objects would change")
            if info["diff"]:
                console.print(Syntax(info["diff"], "diff", theme="ansi_dark", background_color="default"))
        console.print("[dim]dry run: nothing was changed[/]")

    emit(data, output, render)
    if any("error" in info for info in diffs.values()):
        raise typer.Exit(1)


# ---------------------------------------------------------------- rollback


def rollback_cmd(
    to: Annotated[int | None, typer.Option("--to", help="release number to go back to (default: the one before each cloud's current)")] = None,
    clouds: CloudsOpt = None,
    timeout: Annotated[float | None, typer.Option(help="seconds to wait for each rollout")] = None,
    wait: Annotated[float | None, typer.Option("--wait", help="seconds to wait for another deploy's lock")] = None,
    config: ConfigOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Re-apply the recorded manifests of an earlier release. No rebuild, no push."""
    from orchestrator.config import load_config
    from orchestrator.errors import ReleaseError
    from orchestrator.kube.render import overlay_for
    from orchestrator.releases.deployer import rollback_release
    from orchestrator.releases.store import open_store

    cfg = load_config(config)
    names = _split_clouds(clouds)
    store = open_store(cfg, create=False)
    if store is None:
        raise ReleaseError("there is no release history yet", hint="deploy first with `mco deploy BUNDLE`")
    with store:
        if names is None:
            in_history = set(store.get(to).clouds) if to is not None else {c for c in store.iter_clouds()
                                                                              if store.current(c) is not None}
            names = [n for n, c in cfg.clouds.items() if c.cluster is not None and n in in_history]
            if not names:
                raise ReleaseError("no configured cluster has a release to roll back",
                                   hint="check --config; `mco history` lists the releases")
        chosen = _cluster_clouds(cfg, names)
        settings = _settings(cfg, timeout=timeout, wait=wait)
        clusters = {n: (c.cluster, overlay_for(c)) for n, c in chosen.items()}
        with _CloudProgress(list(chosen), enabled=output == OutputFormat.table) as progress:
            result = rollback_release(store, _lock(cfg, settings, "rollback"), clusters, to=to, settings=settings,
                                      progress=progress)
    data = result.summary()
    emit(data, output, _render_release_result)
    if data["status"] != "deployed":
        raise typer.Exit(1)


# ---------------------------------------------------------------- history and status


def history_cmd(
    limit: Annotated[int | None, typer.Option(help="show only the newest N releases")] = None,
    manifests: Annotated[bool, typer.Option("--manifests", help="include the rendered manifests (JSON output)")] = False,
    config: ConfigOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """List releases: newest first, with each cloud's status."""
    from orchestrator.config import load_config
    from orchestrator.releases.store import open_store

    cfg = load_config(config)
    store = open_store(cfg, create=False)
    releases = []
    if store is not None:
        with store:
            releases = [r.summary(manifests=manifests) for r in store.list(limit=limit)]

    def render(data: dict[str, Any]) -> None:
        if not data["releases"]:
            console.print("no releases yet; deploy with `mco deploy BUNDLE`")
            return
        # One line per cloud inside each release: readable on an 80-column terminal.
        table = compact_table(f"releases of {cfg.project.name}",
                              caption="✓ deployed  ✗ failed  ↩N rolled back to release N\n"
                                      "who made each release, details and full digests: --output json")
        for col in ("#", "when (UTC)", "kind", "status", "model"):
            table.add_column(col, no_wrap=True)
        table.add_column("clouds", overflow="fold")
        for r in data["releases"]:
            kind = r["kind"] + (f" of {r['rollback_of']}" if r.get("rollback_of") is not None else "")
            if r["gate_forced"]:
                kind += " [yellow](gate forced)[/]"
            clouds_txt = "\n".join(f"{c} {_mark(v)}" + (f" {v['reason']}" if v.get("reason") else "")
                                    for c, v in r["clouds"].items())
            when = str(r["created_at"])[5:16].replace("T", " ")
            table.add_row(str(r["release"]), when, kind, _styled(r["status"]), _short(r["model_digest"], 8),
                          clouds_txt)
        console.print(table)

    emit({"service": cfg.project.name, "releases": releases}, output, render)


def status_cmd(
    clouds: CloudsOpt = None,
    config: ConfigOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Per cloud: the current release, image digest, ready replicas and endpoint (read live)."""
    from concurrent.futures import ThreadPoolExecutor

    from orchestrator.config import load_config
    from orchestrator.errors import MCOError
    from orchestrator.kube.render import APP_NAME
    from orchestrator.releases.deployer import KubeTarget
    from orchestrator.releases.store import open_store

    cfg = load_config(config)
    chosen = _cluster_clouds(cfg, _split_clouds(clouds))
    store = open_store(cfg, create=False)
    current: dict[str, Any] = {}
    if store is not None:
        with store:
            current = {n: store.current(n) for n in chosen}

    def one(name: str) -> dict[str, Any]:
        cluster = chosen[name].cluster
        cur = current.get(name)
        row: dict[str, Any] = {"release": cur.release if cur else None, "image_digest": cur.image_digest if cur else None,
                               "model_digest": cur.model_digest if cur else None,
                               "endpoint": (cur.endpoint if cur else None) or cluster.endpoint}
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
        rows = dict(zip(chosen, pool.map(one, chosen)))

    def render(data: dict[str, Any]) -> None:
        table = compact_table("deployments")
        for col in ("cloud", "#", "state", "ready", "model", "image"):
            table.add_column(col, no_wrap=True)
        table.add_column("endpoint", overflow="fold")
        for name, r in data["clouds"].items():
            ready = "-" if r.get("ready_replicas") is None else f"{r['ready_replicas']}/{r.get('replicas') or '?'}"
            state = r["state"] + (f": {r['error']}" if r.get("error") else "")
            table.add_row(name, str(r["release"] or "-"), state, ready, _short(r["model_digest"], 10),
                          _short(r["image_digest"], 10), r["endpoint"] or "-")
        console.print(table)

    emit({"clouds": rows}, output, render)


def register(app: typer.Typer) -> None:
    app.command("render")(render_cmd)
    app.command("deploy")(deploy_cmd)
    app.command("rollback")(rollback_cmd)
    app.command("history")(history_cmd)
    app.command("status")(status_cmd)
