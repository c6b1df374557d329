"""A fetch-mode image given exactly what ``render_release`` puts in a fetch-mode pod pulls its
bundle from an S3 store over a Docker network, verifies it, and serves.

The store is moto's S3 server on the gateway of Docker's default bridge (this machine, as a
container sees it); the keys reach the container as environment, as the pod's Secret gives
them. The kind cluster version of this is tests/e2e/deploy/test_fetch_mode_kind.py.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import PackagingConfig, parse_config
from orchestrator.model.bundle import Bundle
from orchestrator.testing.processes import stop_process
from tests.integration.images.conftest import wait_ready

pytestmark = [pytest.mark.docker, pytest.mark.slow]

KEYS = {"AWS_ACCESS_KEY_ID": "mco-it-fetch", "AWS_SECRET_ACCESS_KEY": "mco-it-fetch-not-a-secret"}


def bridge_gateway(docker_engine: Any) -> str:
    for entry in docker_engine.api.inspect_network("bridge")["IPAM"]["Config"] or []:
        subnet = ipaddress.ip_network(entry["Subnet"], strict=False)
        if subnet.version == 4:
            return str(entry.get("Gateway") or next(subnet.hosts()))
    raise AssertionError("Docker's bridge network has no IPv4 subnet")


@pytest.fixture(scope="module")
def s3_config(docker_engine: Any, digits_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """moto on the bridge gateway, the bundle pushed to it; the config that names it."""
    from orchestrator.artifacts.push import push_bundle
    from orchestrator.net import free_port, wait_for_port
    from orchestrator.providers.loader import get_provider

    gateway = bridge_gateway(docker_engine)
    port = free_port(gateway)
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", gateway, "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(gateway, port, timeout=30, what="moto's S3 server")
        cfg = parse_config({
            "packaging": {"model_source": "fetch", "fetch_extras": ["aws"]},
            "clouds": {"aws": {"provider": "aws", "cluster": {"context": "kind-x", "kind_cluster": "x"},
                               "storage": {"bucket": "mco-it-fetch", "region": "us-east-1",
                                           "endpoint": f"http://{gateway}:{port}", "prefix": "it"}}}})
        with pytest.MonkeyPatch.context() as env:
            for key, value in KEYS.items():
                env.setenv(key, value)
            with get_provider("aws", cfg.clouds["aws"]).artifact_store() as bucket:
                bucket.ensure_bucket()
            results = push_bundle(cfg, digits_bundle, ["aws"])
        assert results["aws"].ok, results["aws"].error
        yield cfg, log
    finally:
        stop_process(proc, timeout=10)


@pytest.fixture(scope="module")
def aws_fetch_image(docker_engine: Any, digits_bundle: Bundle) -> Any:
    from orchestrator.packaging.build import build_image

    return build_image(digits_bundle.path, packaging=PackagingConfig(model_source="fetch", fetch_extras=["aws"]))


def rendered_pod(cfg: Any, bundle: Bundle, image: str) -> tuple[dict[str, str], str]:
    """The model container's environment and its /tmp size, as the kind overlay renders them."""
    from orchestrator.kube.render import ReleaseValues, fetch_sources, render_release

    fetch = fetch_sources(cfg, ["aws"], bundle.total_bytes())["aws"]
    objs = render_release("kind", ReleaseValues(image=image, model_digest=bundle.digest, fetch=fetch))
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    (tmp,) = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "tmp"]
    return {e["name"]: e["value"] for e in container["env"]}, tmp["emptyDir"]["sizeLimit"]


def test_the_rendered_pod_settings_fetch_from_s3_over_the_network(s3_config: Any, aws_fetch_image: Any,
                                                                  docker_engine: Any, digits_bundle: Bundle,
                                                                  container: Callable[..., Any]) -> None:
    cfg, log = s3_config
    env, tmp_size = rendered_pod(cfg, digits_bundle, aws_fetch_image.image_id)
    assert not set(KEYS) & set(env)  # the keys are not in the manifest...
    size = tmp_size.removesuffix("Mi") + "m"
    ctr, port = container(aws_fetch_image.image, read_only=True, tmpfs={"/tmp": f"size={size}"},
                          environment={**env, **KEYS})  # ...but come from the Secret, as environment
    ready = wait_ready(port, ctr).json()
    assert ready["model_digest"] == digits_bundle.digest
    address = docker_engine.api.inspect_container(ctr.id)["NetworkSettings"]["IPAddress"]
    gets = [line for line in log.read_text(errors="replace").splitlines()
            if '"GET ' in line and f"/{digits_bundle.digest}/model.onnx " in line]
    assert any(line.startswith(f"{address} ") for line in gets), (address, gets)


def test_without_the_keys_the_pod_refuses_to_start_and_says_so(s3_config: Any, aws_fetch_image: Any,
                                                               digits_bundle: Bundle,
                                                               container: Callable[..., Any]) -> None:
    """A missing or empty Secret: no credentials, exit 3 naming them, never a server without its model."""
    cfg, _log = s3_config
    env, _size = rendered_pod(cfg, digits_bundle, aws_fetch_image.image_id)
    ctr, _port = container(aws_fetch_image.image, read_only=True, tmpfs={"/tmp": "size=64m"},
                           environment={**env, "AWS_EC2_METADATA_DISABLED": "true"})
    assert ctr.wait(timeout=120)["StatusCode"] == 3
    logs = ctr.logs().decode(errors="replace")
    assert "refusing to start" in logs and "credentials" in logs.lower(), logs[-2000:]
    assert json.loads(env["MCO_STORAGE"])["storage"]["credentials"] == "sdk"
