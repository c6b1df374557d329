"""The acceptance path, through the CLI: `mco local up registries && mco push BUNDLE --config mco.local.yaml`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from orchestrator.model.bundle import Bundle
from tests.integration.images.conftest import run_mco

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, docker_engine: Any) -> Iterator[Path]:
    cwd = tmp_path_factory.mktemp("cli-push")
    up = run_mco("local", "up", "registries", "--output", "json", cwd=cwd, timeout=120)
    assert up.returncode == 0, up.stderr
    try:
        yield cwd
    finally:
        down = run_mco("local", "down", "registries", cwd=cwd, timeout=120)
        assert down.returncode == 0, down.stderr


def test_push_adds_image_digest_per_cloud_then_transfers_nothing(workdir: Path, built: Any,
                                                                 digits_bundle: Bundle) -> None:
    first = run_mco("push", str(digits_bundle.path), "--config", "mco.local.yaml", "--output", "json", cwd=workdir)
    assert first.returncode == 0, first.stderr
    clouds = json.loads(first.stdout)["clouds"]
    assert set(clouds) == {"aws", "gcp", "azure"}
    registries = yaml.safe_load((workdir / "mco.local.yaml").read_text())["clouds"]
    for cloud, entry in clouds.items():
        reg = registries[cloud]["registry"]
        assert entry["image_digest"].startswith("sha256:")
        assert entry["image"] == f"{entry['image_repository']}@{entry['image_digest']}"
        assert entry["image_repository"].startswith(reg["url"] + "/mco/")
        auth = (reg["username"], Path(reg["password_file"]).read_text().strip()) if reg["auth"] == "basic" else None
        path = entry["image_repository"].removeprefix(reg["url"] + "/")
        head = httpx.head(f"http://{reg['url']}/v2/{path}/manifests/{entry['image_digest']}", auth=auth,
                          headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        assert head.status_code == 200

    again = run_mco("push", str(digits_bundle.path), "--config", "mco.local.yaml", "--output", "json", cwd=workdir)
    assert again.returncode == 0, again.stderr
    for cloud, entry in json.loads(again.stdout)["clouds"].items():
        assert entry["image_digest"] == clouds[cloud]["image_digest"]
        assert entry["layers_pushed"] == 0 and entry["transferred"] is False

    table = run_mco("push", str(digits_bundle.path), "--config", "mco.local.yaml", cwd=workdir)
    assert table.returncode == 0, table.stderr
    said = " ".join((table.stdout + table.stderr).split())
    assert said.count("no layer transferred") >= 3


def test_push_with_a_registry_down_fails_that_cloud_only(workdir: Path, built: Any, digits_bundle: Bundle) -> None:
    from orchestrator.net import free_port

    cfg = yaml.safe_load((workdir / "mco.local.yaml").read_text())
    cfg["clouds"]["gcp"]["registry"]["url"] = f"127.0.0.1:{free_port()}"
    broken = workdir / "broken.yaml"
    broken.write_text(yaml.safe_dump(cfg))
    proc = run_mco("push", str(digits_bundle.path), "--config", str(broken), "--output", "json", cwd=workdir)
    assert proc.returncode == 1
    clouds = json.loads(proc.stdout)["clouds"]
    assert clouds["aws"]["image_digest"].startswith("sha256:")
    assert clouds["azure"]["image_digest"].startswith("sha256:")
    assert clouds["gcp"]["image_error_kind"] == "Unreachable"
    stderr = " ".join(proc.stderr.split())
    assert "gcp does not have the image" in stderr and "Traceback" not in stderr


def test_push_with_bad_credentials_names_the_problem_not_the_secret(workdir: Path, built: Any,
                                                                    digits_bundle: Bundle) -> None:
    secret = "wrong-password-5d1e0b"
    proc = run_mco("push", str(digits_bundle.path), "--config", "mco.local.yaml", "--output", "json",
                   cwd=workdir, env={"MCO_REGISTRY_AZURE_PASSWORD": secret})
    assert proc.returncode == 1
    clouds = json.loads(proc.stdout)["clouds"]
    assert clouds["azure"]["image_error_kind"] == "AccessDenied"
    assert clouds["aws"]["image_digest"].startswith("sha256:")
    assert secret not in proc.stdout and secret not in proc.stderr
    assert "MCO_REGISTRY_AZURE_PASSWORD" in " ".join(proc.stderr.split())
