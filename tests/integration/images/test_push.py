"""Pushing one image to three real local registries (one with htpasswd auth), by digest."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from orchestrator.config import load_config, parse_config
from orchestrator.errors import AccessDenied, Unreachable

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _registries(config_path: Path, **overrides: dict[str, Any]) -> dict[str, Any]:
    from orchestrator.packaging.publish import configured_registries

    data = yaml.safe_load(config_path.read_text())
    for cloud, registry in overrides.items():
        data["clouds"][cloud]["registry"].update(registry)
    return configured_registries(parse_config(data, source=config_path))


@pytest.fixture(scope="module")
def first_push(built: Any, local_registries: Path) -> Any:
    from orchestrator.packaging.publish import push_image

    return push_image(built.image, _registries(local_registries), image_id=built.image_id)


def test_push_reaches_all_three_registries_by_digest(first_push: Any, built: Any, local_registries: Path) -> None:
    assert not first_push.failed, first_push.failed
    digests = {cloud: pushed.digest for cloud, pushed in first_push.results.items()}
    assert set(digests) == {"aws", "gcp", "azure"}
    assert len(set(digests.values())) == 1, "the same image has the same manifest digest everywhere"
    cfg = yaml.safe_load(local_registries.read_text())["clouds"]
    name = built.image.split(":")[0].rsplit("/", 1)[-1]
    for cloud, pushed in first_push.results.items():
        assert pushed.ref == f"{cfg[cloud]['registry']['url']}/mco/{name}@{pushed.digest}"
        assert pushed.layers_pushed > 0
        # Straight to the registry's HTTP API, not through mco's client.
        reg = cfg[cloud]["registry"]
        auth = None
        if reg["auth"] == "basic":
            auth = (reg["username"], Path(reg["password_file"]).read_text().strip())
        base = f"http://{reg['url']}/v2"
        assert f"mco/{name}" in httpx.get(f"{base}/_catalog", auth=auth).json()["repositories"]
        head = httpx.head(f"{base}/mco/{name}/manifests/{pushed.digest}", auth=auth,
                          headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        assert head.status_code == 200
        assert head.headers["docker-content-digest"] == pushed.digest


def test_htpasswd_registry_refuses_anonymous_reads(first_push: Any, local_registries: Path) -> None:
    reg = yaml.safe_load(local_registries.read_text())["clouds"]["azure"]["registry"]
    assert httpx.get(f"http://{reg['url']}/v2/_catalog").status_code == 401


def test_docker_pulls_the_pushed_digest_and_gets_the_built_image(first_push: Any, built: Any,
                                                                 docker_engine: Any) -> None:
    ref = first_push.results["aws"].ref
    try:
        image = docker_engine.images.pull(ref)
        assert image.id == built.image_id, "pull by digest gives back exactly the image that was built"
    finally:
        docker_engine.images.remove(ref, force=False)


def test_second_push_transfers_no_layer_and_says_so(first_push: Any, built: Any, local_registries: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.cli._common import ProgressLines
    from orchestrator.packaging.publish import push_image

    with ProgressLines() as progress:  # the CLI's drawing of what push_image reports
        again = push_image(built.image, _registries(local_registries), image_id=built.image_id, progress=progress)
    err = " ".join(capsys.readouterr().err.split())
    assert not again.failed
    for cloud, pushed in again.results.items():
        assert pushed.layers_pushed == 0 and pushed.bytes_sent == 0
        assert pushed.digest == first_push.results[cloud].digest
        assert again.to_dict()[cloud]["transferred"] is False
    assert err.count("no layer transferred") == 3


# The pushes below come after `first_push` (their fixture), which must be the first push into
# the fresh registries to see layers transferred, whatever order the tests run in.
def test_one_registry_down_the_others_still_get_the_image(first_push: Any, built: Any, local_registries: Path) -> None:
    from orchestrator.net import free_port
    from orchestrator.packaging.publish import push_image

    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = push_image(built.image, _registries(local_registries, gcp={"url": dead}), image_id=built.image_id)
    assert set(result.failed) == {"gcp"}
    error = result.failed["gcp"]
    assert isinstance(error, Unreachable)
    assert dead in error.message and "gcp" in error.message
    assert "registry running" in (error.hint or "")
    assert result.results["aws"].digest.startswith("sha256:")
    assert result.results["azure"].digest.startswith("sha256:")


def test_bad_credentials_are_refused_without_leaking_the_secret(first_push: Any, built: Any, local_registries: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.packaging.publish import push_image

    secret = "not-the-password-7f3a9c"
    monkeypatch.setenv("MCO_REGISTRY_AZURE_PASSWORD", secret)  # the env var wins over the file
    result = push_image(built.image, _registries(local_registries), image_id=built.image_id)
    assert set(result.failed) == {"azure"}
    error = result.failed["azure"]
    assert isinstance(error, AccessDenied)
    assert "MCO_REGISTRY_AZURE_PASSWORD" in (error.hint or "")
    text = f"{error} {error.hint} {result.to_dict()}"
    assert secret not in text


def test_password_file_must_be_private(built: Any, local_registries: Path, tmp_path: Path) -> None:
    from orchestrator.errors import ConfigError

    loose = tmp_path / "password"
    loose.write_text("whatever\n")
    loose.chmod(0o644)
    registries = _registries(local_registries, azure={"password_file": str(loose), "password_env": None})
    with pytest.raises(ConfigError, match="readable by others"):
        registries["azure"].credentials()


def test_local_config_holds_no_secret(local_registries: Path) -> None:
    cfg = load_config(local_registries)
    azure = cfg.clouds["azure"].registry
    assert azure is not None and azure.auth == "basic" and azure.password_file is not None
    secret = azure.password_file.read_text().strip()
    assert len(secret) >= 20
    assert secret not in local_registries.read_text()
    assert oct(azure.password_file.stat().st_mode & 0o777) == "0o600"
    assert subprocess.run(["grep", "-rl", secret, str(local_registries.parent / ".mco")],
                          capture_output=True, text=True).stdout.strip().endswith("password")
