"""The in-cluster router for clusters that pull: `with_routers` builds the router image, pushes it to
three real local registries (one with htpasswd auth) with the model's publisher, and the rendered
Deployment of each cloud pins the digest the registry serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from orchestrator.config import parse_config

pytestmark = [pytest.mark.docker, pytest.mark.slow]
TOKEN = "router-push-test-token-0123456789abcdef"


def test_the_router_image_goes_to_every_registry_and_each_deployment_pins_its_digest(
        docker_engine: Any, local_registries: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.kube.render import dump_yaml
    from orchestrator.packaging.router_image import build_router_image
    from orchestrator.releases import routers
    from orchestrator.releases.deployer import CloudTarget, DeploySettings, _render

    data = yaml.safe_load(local_registries.read_text())
    clouds = list(data["clouds"])
    assert len(clouds) == 3
    for name in clouds:  # the stand-ins as clouds whose clusters pull from their registry
        data["clouds"][name]["cluster"] = {"context": f"{name}-stand-in"}
        data["clouds"][name]["router_urls"] = [f"https://router.{name}.example.com"]
    data["router"] = {"in_cluster": True}
    cfg = parse_config(data, source=local_registries)
    applied: list[str] = []
    monkeypatch.setattr(routers, "_token", lambda cfg: TOKEN)
    monkeypatch.setattr(routers, "_apply_secret", lambda t, token: applied.append(t.cloud))  # no cluster here
    targets = [CloudTarget(n, c.cluster, n,  # the cloud overlays
                           image_ref=f"{c.registry.url}/mco/digits@sha256:{'a' * 64}")
               for n, c in cfg.clouds.items() if c.cluster is not None and c.registry is not None]

    out, errors = routers.with_routers(cfg, dict(cfg.clouds), targets)  # builds (or reuses) and pushes
    assert errors == {} and sorted(applied) == sorted(clouds)
    built = build_router_image(client=docker_engine)  # the same inputs: the image with_routers pushed
    assert built.cached
    digests = set()
    for target in out:
        assert target.router is not None
        objs = _render(target, "b" * 64, DeploySettings(), None, None)
        dep = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "mco-router")
        image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        reg = data["clouds"][target.cloud]["registry"]
        repo, _, digest = image.partition("@")
        assert repo == f"{reg['url']}/{reg.get('repository', 'mco')}/mco-router" and digest.startswith("sha256:")
        digests.add(digest)
        # the registry itself serves that manifest, by digest
        auth = (reg["username"], Path(reg["password_file"]).read_text().strip()) if reg["auth"] == "basic" else None
        head = httpx.head(f"http://{reg['url']}/v2/{repo.split('/', 1)[1]}/manifests/{digest}", auth=auth,
                          headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        assert head.status_code == 200 and head.headers["docker-content-digest"] == digest
        assert TOKEN not in dump_yaml(objs)
    assert len(digests) == 1, "the same router image has the same manifest digest in every registry"
    # pulled by digest from a registry, it is exactly the image that was built
    aws = next(t for t in out if t.cloud == "aws")
    assert aws.router is not None
    try:
        assert docker_engine.images.pull(aws.router.image).id == built.image_id
    finally:
        docker_engine.images.remove(aws.router.image, force=False)
