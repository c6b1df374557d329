"""Storage config errors name the file, the key and the fix; providers load lazily."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config import CloudConfig, StorageConfig, load_config, parse_config
from orchestrator.errors import CapabilityError, ConfigError, MissingExtraError
from orchestrator.providers.base import Capability
from orchestrator.providers.loader import get_provider, provider_class

REPO = Path(__file__).resolve().parents[3]
MCO = str(Path(sys.executable).parent / "mco")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mco.yaml"
    path.write_text(text)
    return path


def test_unknown_storage_key_names_file_key_and_fix(tmp_path: Path) -> None:
    path = _write(tmp_path, "clouds:\n  aws:\n    provider: aws\n    storage: {bucket: b, regoin: us-east-1}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in err.value.message
    assert "clouds.aws.storage.regoin" in err.value.message
    assert "remove or rename" in (err.value.hint or "")


def test_missing_bucket_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "clouds:\n  gcp:\n    provider: gcp\n    storage: {region: europe-west1}\n")
    with pytest.raises(ConfigError, match=r"clouds\.gcp\.storage\.bucket"):
        load_config(path)


@pytest.mark.parametrize("endpoint", ["127.0.0.1:9000", "ftp://127.0.0.1:21", "http://", "http://127.0.0.1:notaport",
                                      "http://127.0.0.1:99999"])
def test_bad_endpoint_url_is_refused(endpoint: str) -> None:
    with pytest.raises(ConfigError, match=r"clouds\.aws\.storage\.endpoint"):
        parse_config({"clouds": {"aws": {"provider": "aws", "storage": {"bucket": "b", "endpoint": endpoint}}}})


def test_emulator_credentials_only_on_loopback() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        parse_config({"clouds": {"aws": {"provider": "aws", "storage": {
            "bucket": "b", "endpoint": "https://s3.amazonaws.com", "credentials": "emulator"}}}})
    assert StorageConfig(bucket="b", endpoint="http://127.0.0.1:9000", credentials="emulator").credentials == "emulator"


def test_cli_reports_bad_config_without_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, "clouds:\n  azure:\n    provider: azure\n    storage: {bucket: b, endpoint: 'not a url'}\n")
    proc = subprocess.run([MCO, "push", str(tmp_path), "--config", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "clouds.azure.storage.endpoint" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_provider_classes_load_without_importing_sdks() -> None:
    code = ("import sys\n"
            "from orchestrator.providers.loader import provider_class\n"
            "for p in ('aws', 'gcp', 'azure', 'local'): provider_class(p)\n"
            "import orchestrator.artifacts, orchestrator.cli.push\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore') "
            "or m.startswith(('google.cloud', 'azure.storage'))]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_unknown_provider_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown provider 'ibm'"):
        provider_class("ibm")


def test_missing_sdk_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    # Make `import boto3` fail the way it does when the extra is not installed.
    monkeypatch.setitem(sys.modules, "boto3", None)
    provider = get_provider("aws", CloudConfig(provider="aws", storage=StorageConfig(bucket="b")))
    with pytest.raises(MissingExtraError) as err:
        provider.artifact_store()
    assert err.value.hint == "pip install 'mco[aws]'"


def test_capability_check_lists_every_missing_capability_with_its_reason(tmp_path: Path) -> None:
    local = get_provider("local", CloudConfig(provider="local", storage=StorageConfig(bucket=str(tmp_path))))
    assert local.supports(Capability.OBJECT_STORE)
    with pytest.raises(CapabilityError) as err:
        local.check(Capability.OBJECT_STORE, Capability.SERVER_VERIFIED_UPLOAD, Capability.MULTIPART_UPLOAD)
    assert "server-verified-upload: a directory has no server" in err.value.message
    assert "multipart-upload:" in err.value.message
    emulated = get_provider("aws", CloudConfig(provider="aws", storage=StorageConfig(
        bucket="b", endpoint="http://127.0.0.1:9", credentials="emulator")))
    assert not emulated.supports(Capability.SERVER_VERIFIED_UPLOAD)
    real = get_provider("aws", CloudConfig(provider="aws", storage=StorageConfig(bucket="b")))
    real.check(Capability.SERVER_VERIFIED_UPLOAD, Capability.MULTIPART_UPLOAD)
