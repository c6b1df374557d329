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

Clouds other than kind are refused for now: their routers need the image pushed to each
cloud's registry and HTTPS entry points with certificates (see the report of issue 19).
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import replace
from typing import Any

from orchestrator.config import CloudConfig, MCOConfig, RouterTargetConfig
from orchestrator.errors import CapabilityError, ClusterError
from orchestrator.kube.router import ROUTER_NODE_PORT, RouterValues, token_fingerprint
from orchestrator.progress import ProgressFn, quiet
from orchestrator.releases.deployer import CloudTarget

__all__ = ["TOKEN_SECRET", "kind_node_address", "token_secret", "with_routers"]

TOKEN_SECRET = "mco-router-token"
MODEL_NODE_PORT = 30080


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


def with_routers(cfg: MCOConfig, chosen: dict[str, CloudConfig], targets: list[CloudTarget], *,
                 progress: ProgressFn = quiet, addresses: dict[str, str] | None = None,
                 router_image: str | None = None) -> tuple[list[CloudTarget], dict[str, str]]:
    """``targets`` with their ``RouterValues``, and ``{cloud: error}`` for clusters that could not
    get the router's image or token. Unchanged when ``router.in_cluster`` is off."""
    if not cfg.router.in_cluster:
        return targets, {}
    not_kind = [n for n, c in chosen.items() if c.cluster is None or not c.cluster.kind_cluster]
    if not_kind:
        raise CapabilityError(f"router.in_cluster runs routers only in kind clusters so far; "
                              f"{', '.join(not_kind)} would need the router image in its registry and an HTTPS "
                              "entry point", hint="set router.in_cluster: false for these clouds' deploys")
    errors: dict[str, str] = {}
    if router_image is None:
        from orchestrator.packaging.router_image import build_router_image
        from orchestrator.releases.images import LocalImage, ensure_on_kind

        progress("router", "the router image (reused when its inputs are unchanged)…")
        built = build_router_image(packaging=cfg.packaging)
        progress("router", f"router image {built.image_id[:19]}… "
                           f"{'reused' if built.cached else 'built'} in {built.build_seconds:.1f} s")
        router_image = built.image_id
        image = LocalImage(name=built.image, image_id=built.image_id, bundle_digest=None)
        errors.update(ensure_on_kind(image, {n: str(c.cluster.kind_cluster) for n, c in chosen.items()
                                             if c.cluster is not None}, progress))
    if addresses is None:
        addresses = {n: kind_node_address(n) for n in chosen}
    token = _token(cfg)
    out = []
    for t in targets:
        if t.cloud in errors:
            out.append(t)
            continue
        remote = tuple(RouterTargetConfig(name=n, url=f"http://{addresses[n]}:{MODEL_NODE_PORT}",
                                          pricing_key=c.pricing_key,
                                          # the other kind nodes, on the project's own Docker network
                                          allow_insecure_http=True)
                       for n, c in chosen.items() if n != t.cloud)
        try:
            _apply_secret(t, token)
        except ClusterError as exc:
            errors[t.cloud] = exc.message
            out.append(t)
            continue
        out.append(replace(t, router=RouterValues(
            image=router_image, cloud=t.cloud, remote_targets=remote, replicas=cfg.router.in_cluster_replicas,
            token_secret=TOKEN_SECRET, node_port=ROUTER_NODE_PORT, pricing_key=chosen[t.cloud].pricing_key,
            extra=_router_settings(cfg), token_fingerprint=token_fingerprint(token))))
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
