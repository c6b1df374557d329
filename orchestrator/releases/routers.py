"""The router next to the model in every cloud's cluster, as part of ``mco deploy``
(``router.in_cluster: true``).

Before the release is applied: the router image is built (``packaging/router_image.py``,
cached like any image) and loaded into every kind cluster whose node lacks it; each
cluster gets the admin token as the Secret ``mco-router-token`` (applied on its own, never
part of the rendered or recorded manifests, never printed); and each cloud's target gets
``RouterValues``: its own model Service first, then the other clouds' entry points (on
kind: the other clusters' nodes on the project's Docker network, at their model NodePort).
The router objects then go into the release's manifests (``kube/router.py``), so the
record names the router image per cloud and a rollback restores it.

**Real clouds** (a cluster without ``kind_cluster``) need two things the config names:

* ``clouds.<c>.registry``: the router image is pushed there like the model image, by the same
  publisher (``packaging/publish.push_image``), under ``router.image_repository``
  (``<registry>/<repository>/mco-router``), and the Deployment runs it pinned by digest
  (``REGISTRY/REPO@sha256:…``), never by tag. A cloud whose push fails is recorded as failed;
  the others go on.
* ``clouds.<c>.router_urls``: the first one is the cloud's public entry, the HTTPS address in
  front of its ``mco-router`` Service. The other clouds' routers spill to it, with TLS
  verification on, checking it on ``/readyz/local`` (can *that* cloud serve?). A cloud whose
  entry is missing, or plain HTTP to a host other than loopback, is refused before anything
  is built or pushed. Routers calling routers do not loop: the receiving router serves a
  request that came through a router (``x-mco-hop``) from its own cloud only
  (``router/headers.py``).

Between two kind clusters nothing changes: the other node on the project's Docker network.
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import replace
from typing import Any

from orchestrator.config import CloudConfig, MCOConfig, RouterTargetConfig, is_loopback_host
from orchestrator.errors import ClusterError, ConfigError, MCOError
from orchestrator.kube.router import ROUTER_NODE_PORT, RouterValues, token_fingerprint
from orchestrator.progress import ProgressFn, quiet
from orchestrator.releases.deployer import CloudTarget

__all__ = ["REMOTE_HEALTH_PATH", "TOKEN_SECRET", "kind_node_address", "public_entry", "publish_router_image",
           "token_secret", "with_routers"]

TOKEN_SECRET = "mco-router-token"
MODEL_NODE_PORT = 30080
# another cloud's router is checked on whether its own cloud can serve, not whether it can route
# somewhere (it could, by spilling back here)
REMOTE_HEALTH_PATH = "/readyz/local"


def kind_node_address(cloud: str) -> str:
    """The node's address on the project's Docker network, where the other clusters reach it."""
    from orchestrator.kube.kind import node_container

    out = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                          node_container(cloud)], capture_output=True, text=True, timeout=30)
    address = out.stdout.split()[0] if out.returncode == 0 and out.stdout.split() else ""
    if not address:
        raise ClusterError(f"cannot find the address of {cloud}'s kind node: {out.stderr.strip()[:200]}",
                           hint="is the cluster running? `mco local status clusters`")
    return address


def token_secret(namespace: str, token: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": TOKEN_SECRET, "namespace": namespace,
                         "labels": {"app.kubernetes.io/name": "mco-router", "app.kubernetes.io/part-of": "mco"}},
            "data": {"token": base64.b64encode(token.encode()).decode()}}


def _router_settings(cfg: MCOConfig) -> dict[str, Any]:
    """The timing sections of ``router:`` carry over to the routers in the clusters."""
    r = cfg.router
    return {"health": r.health.model_dump(mode="json"), "outlier": r.outlier.model_dump(mode="json"),
            "retries": r.retries.model_dump(mode="json")}


def _is_kind(cloud: CloudConfig) -> bool:
    return cloud.cluster is not None and bool(cloud.cluster.kind_cluster)


def public_entry(cfg: MCOConfig, name: str) -> str:
    """Cloud ``name``'s public router entry: the first of ``clouds.<name>.router_urls``, HTTPS
    (plain HTTP only on loopback, for local stand-ins)."""
    from urllib.parse import urlparse

    where = cfg.source or "mco.yaml"
    urls = cfg.cloud(name).router_urls
    if not urls:
        raise ConfigError(f"{where}: clouds.{name}.router_urls is empty, so the other clouds' routers have no "
                          f"public entry to spill to {name} through",
                          hint=f"add clouds.{name}.router_urls: [https://router.{name}.example.com], the HTTPS "
                               f"address (a certificate the routers verify) in front of {name}'s mco-router Service")
    parsed = urlparse(urls[0])
    if parsed.scheme != "https" and not is_loopback_host(parsed.hostname):
        raise ConfigError(f"{where}: clouds.{name}.router_urls[0] is {urls[0]}: plain HTTP between clouds sends "
                          "requests and answers in the clear", hint=f"serve {name}'s router entry over HTTPS "
                                                                    "and list it as https://…")
    return urls[0]


def _remote_targets(cfg: MCOConfig, chosen: dict[str, CloudConfig], own: str,
                    addresses: dict[str, str]) -> tuple[RouterTargetConfig, ...]:
    """The other clouds, for ``own``'s router: between kind clusters the other node on the Docker
    network (at its model NodePort); otherwise the other cloud's public HTTPS router entry."""
    out = []
    for name, cloud in chosen.items():
        if name == own:
            continue
        if _is_kind(chosen[own]) and _is_kind(cloud):
            # the other kind nodes, on the project's own Docker network
            out.append(RouterTargetConfig(name=name, url=f"http://{addresses[name]}:{MODEL_NODE_PORT}",
                                          pricing_key=cloud.pricing_key, allow_insecure_http=True))
        else:
            out.append(RouterTargetConfig(name=name, url=public_entry(cfg, name), pricing_key=cloud.pricing_key,
                                          health_path=REMOTE_HEALTH_PATH))
    return tuple(out)


def publish_router_image(cfg: MCOConfig, image: str, image_id: str, clouds: list[str], *,
                         progress: ProgressFn = quiet) -> tuple[dict[str, str], dict[str, str]]:
    """Push the router image to ``clouds``' registries (the model's publisher, under
    ``router.image_repository``): ``({cloud: REGISTRY/REPO@sha256:…}, {cloud: error})``."""
    from orchestrator.packaging.publish import configured_registries, push_image

    if not clouds:
        return {}, {}
    pushes = push_image(image, configured_registries(cfg, clouds), image_id=image_id, progress=progress,
                        repository=cfg.router.image_repository)
    refs = {c: str(r.ref) for c, r in pushes.results.items() if not isinstance(r, MCOError)}
    return refs, {c: f"router image push failed: {exc.message}" for c, exc in pushes.failed.items()}


def with_routers(cfg: MCOConfig, chosen: dict[str, CloudConfig], targets: list[CloudTarget], *,
                 progress: ProgressFn = quiet, addresses: dict[str, str] | None = None,
                 router_image: str | None = None, router_refs: dict[str, str] | None = None,
                 ) -> tuple[list[CloudTarget], dict[str, str]]:
    """``targets`` with their ``RouterValues``, and ``{cloud: error}`` for clusters that could not
    get the router's image or token. Unchanged when ``router.in_cluster`` is off.

    ``router_image`` (the image ID kind nodes run) and ``router_refs`` (``{cloud: REGISTRY/REPO@sha256:…}``
    for the clouds that pull) skip the build and the push when given."""
    if not cfg.router.in_cluster:
        return targets, {}
    kind = {n: c for n, c in chosen.items() if _is_kind(c)}
    pulling = [n for n in chosen if n not in kind]
    for name in pulling:  # refused before anything is built or pushed
        if chosen[name].registry is None:
            raise ConfigError(f"{cfg.source or 'mco.yaml'}: cloud '{name}' has no registry for the router image",
                              hint=f"add clouds.{name}.registry (the router image is pushed there like the "
                                   "model's), or set router.in_cluster: false")
    for own in chosen:
        _remote_targets(cfg, chosen, own, dict.fromkeys(kind, "0.0.0.0"))  # every public entry is valid

    errors: dict[str, str] = {}
    images: dict[str, str] = {}
    need_build = (kind and router_image is None) or (pulling and router_refs is None)
    if need_build:
        from orchestrator.packaging.router_image import build_router_image

        progress("router", "the router image (reused when its inputs are unchanged)…")
        built = build_router_image(packaging=cfg.packaging)
        progress("router", f"router image {built.image_id[:19]}… "
                           f"{'reused' if built.cached else 'built'} in {built.build_seconds:.1f} s")
        if kind and router_image is None:
            from orchestrator.releases.images import LocalImage, ensure_on_kind

            router_image = built.image_id
            image = LocalImage(name=built.image, image_id=built.image_id, bundle_digest=None)
            errors.update(ensure_on_kind(image, {n: str(c.cluster.kind_cluster) for n, c in kind.items()
                                                 if c.cluster is not None}, progress))
        if pulling and router_refs is None:
            router_refs, push_errors = publish_router_image(cfg, built.image, built.image_id, pulling,
                                                            progress=progress)
            errors.update(push_errors)
    for name in kind:
        images[name] = str(router_image)
    for name, ref in (router_refs or {}).items():
        if name in pulling:
            images[name] = ref
    if addresses is None:
        addresses = {n: kind_node_address(n) for n in kind} if len(kind) > 1 else {}
    token = _token(cfg)
    out = []
    for t in targets:
        if t.cloud in errors or t.cloud not in images:
            errors.setdefault(t.cloud, "no router image for this cloud")
            out.append(t)
            continue
        remote = _remote_targets(cfg, chosen, t.cloud, addresses)
        try:
            _apply_secret(t, token)
        except ClusterError as exc:
            errors[t.cloud] = exc.message
            out.append(t)
            continue
        out.append(replace(t, router=RouterValues(
            image=images[t.cloud], cloud=t.cloud, remote_targets=remote, replicas=cfg.router.in_cluster_replicas,
            token_secret=TOKEN_SECRET, node_port=ROUTER_NODE_PORT if t.cloud in kind else None,
            pricing_key=chosen[t.cloud].pricing_key, extra=_router_settings(cfg),
            token_fingerprint=token_fingerprint(token))))
    return out, errors


def _token(cfg: MCOConfig) -> str:
    from pathlib import Path

    from orchestrator.router.settings import ensure_token_file, read_token

    base = Path(cfg.source).parent if cfg.source else Path.cwd()
    return read_token(cfg.router, base=base) or ensure_token_file(base / cfg.project.state_dir / "router.token")


def _apply_secret(target: CloudTarget, token: str) -> None:
    from orchestrator.kube.client import KubeClient

    namespace = target.cluster.namespace
    with KubeClient.for_cluster(target.cluster, name=f"{target.cloud} ({target.cluster.context})") as client:
        client.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                      force=True, dry_run=False)
        client.apply(token_secret(namespace, token), force=True, dry_run=False)  # the answer is dropped: it holds the token
