"""Every overlay limits the model container's CPU as well as its memory, and mco.yaml's
``deploy.resources`` overrides them."""

from __future__ import annotations

import pytest

from orchestrator.config import parse_config
from orchestrator.errors import ConfigError
from orchestrator.kube.render import OVERLAYS, ReleaseValues, Resources, render_release

IMAGE = "127.0.0.1:5001/mco/digits@sha256:" + "a" * 64
MODEL = "b" * 64


def _container(overlay: str, resources: Resources | None = None) -> dict:
    objs = render_release(overlay, ReleaseValues(image=IMAGE, model_digest=MODEL, resources=resources))
    (deployment,) = [o for o in objs if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_limits_cpu_and_memory(overlay):
    res = _container(overlay)["resources"]
    assert set(res["limits"]) == {"cpu", "memory"} and set(res["requests"]) == {"cpu", "memory"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_sets_the_limits(overlay):
    cfg = parse_config({"deploy": {"resources": {"cpu_limit": "1500m", "memory_limit": "768Mi",
                                                 "cpu_request": "300m"}}})
    res = _container(overlay, Resources(**cfg.deploy.resources.model_dump()))["resources"]
    assert res["limits"] == {"cpu": "1500m", "memory": "768Mi"}
    assert res["requests"]["cpu"] == "300m"
    assert res["requests"]["memory"] == _container(overlay)["resources"]["requests"]["memory"]  # unset: kept


@pytest.mark.parametrize(("key", "value"), [("cpu_limit", "two"), ("memory_limit", "1GB"), ("cpu_request", "-1")])
def test_a_bad_quantity_is_a_config_error_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=f"deploy.resources.{key}"):
        parse_config({"deploy": {"resources": {key: value}}})


def test_an_overlay_without_a_cpu_limit_is_refused(tmp_path):
    import shutil

    from orchestrator.kube.render import default_manifests_dir

    manifests = tmp_path / "manifests"
    shutil.copytree(default_manifests_dir(), manifests)
    for path in [manifests / "base" / "deployment.yaml", manifests / "overlays" / "aws" / "deployment.yaml"]:
        path.write_text(path.read_text().replace('cpu: "1"\n', "").replace('cpu: "2"\n', ""))
    with pytest.raises(ConfigError, match="no CPU limit"):
        render_release("aws", ReleaseValues(image=IMAGE, model_digest=MODEL), manifests_dir=manifests)
