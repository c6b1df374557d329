"""Push and pull against the three real emulators through the real SDKs (boto3, google-cloud-storage,
azure-storage-blob): idempotence, verification, failures of one cloud, hostile names."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.artifacts.layout import BundleLayout
from orchestrator.artifacts.pull import pull_from_provider
from orchestrator.artifacts.push import push_bundle, storage_providers
from orchestrator.config import parse_config
from orchestrator.errors import IntegrityError, NotFound, Unreachable
from orchestrator.model.bundle import Bundle
from orchestrator.providers.loader import get_provider
from tests.integration.storage.conftest import ALL_CLOUDS, Emulators

MCO = str(Path(sys.executable).parent / "mco")
LAYOUT = BundleLayout("mco")


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    return all(_same_tree(a / d, b / d) for d in cmp.common_dirs) and all(
        (a / f).read_bytes() == (b / f).read_bytes() for f in cmp.common_files)


def _provider(emulators: Emulators, cloud: str):  # type: ignore[no-untyped-def]
    return storage_providers(emulators.config(), [cloud])[cloud]


def test_push_everywhere_then_repush_uploads_nothing(emulators: Emulators, bundle_variant: Callable[..., Bundle],
                                                     tmp_path: Path) -> None:
    bundle = bundle_variant("idem", mib=12)  # > 8 MiB: multipart on S3, resumable on GCS
    first = push_bundle(emulators.config(), bundle)
    assert set(first) == set(ALL_CLOUDS)
    for cloud, r in first.items():
        assert r.ok, (cloud, r.error)
        assert r.verified and r.uploaded == len(bundle.files()) + 1 and r.bytes_uploaded > 12 * 1024 * 1024
    assert any(v.startswith("s3:etag-md5") for v in first["aws"].verification)
    assert "gcs:crc32c" in first["gcp"].verification
    assert any(v.startswith("azure:") for v in first["azure"].verification)

    started = time.perf_counter()
    again = push_bundle(emulators.config(), bundle)
    elapsed = time.perf_counter() - started
    for cloud, r in again.items():
        assert r.ok and r.bytes_uploaded == 0 and r.uploaded == 0, (cloud, r)
        assert r.skipped == len(bundle.files()) + 1
    assert elapsed < 5.0, f"re-push took {elapsed:.2f} s"

    for cloud in ALL_CLOUDS:
        out = tmp_path / cloud
        pulled = pull_from_provider(_provider(emulators, cloud), bundle.name, bundle.digest, out)
        assert pulled.digest == bundle.digest
        assert _same_tree(bundle.path, out), cloud


@pytest.mark.parametrize("cloud", ALL_CLOUDS)
def test_corrupted_object_is_detected_on_pull(cloud: str, emulators: Emulators,
                                              bundle_variant: Callable[..., Bundle], tmp_path: Path) -> None:
    bundle = bundle_variant(f"corrupt-{cloud}")
    provider = _provider(emulators, cloud)
    assert push_bundle(emulators.config(), bundle, [cloud])[cloud].ok
    key = LAYOUT.file_key(bundle.name, bundle.digest, "model.onnx")
    with provider.artifact_store() as store:
        good = store.get_bytes(key)
        store.put_bytes(key, good[:-10] + b"0123456789", content_type="application/octet-stream")
    with pytest.raises(IntegrityError, match=r"model\.onnx has sha256 .*stored object is corrupted"):
        pull_from_provider(provider, bundle.name, bundle.digest, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # The object's recorded sha256 no longer matches the card, so a re-push replaces exactly it.
    repaired = push_bundle(emulators.config(), bundle, [cloud])[cloud]
    assert repaired.ok and repaired.uploaded == 1
    pull_from_provider(provider, bundle.name, bundle.digest, tmp_path / "out")
    assert _same_tree(bundle.path, tmp_path / "out")


class _KillAfter:
    """Progress sink that kills one emulator once ``after`` bytes have gone up."""

    def __init__(self, emulators: Emulators, cloud: str, after: int) -> None:
        self.emulators, self.cloud, self.after = emulators, cloud, after
        self.sent = 0
        self.killed = threading.Event()

    def start(self, cloud: str, total: int) -> None:
        pass

    def advance(self, cloud: str, n: int) -> None:
        self.sent += n
        if self.sent >= self.after and not self.killed.is_set():
            self.killed.set()
            self.emulators.kill(self.cloud)

    def finish(self, cloud: str, ok: bool, note: str) -> None:
        pass


@pytest.mark.slow
@pytest.mark.parametrize("cloud", ALL_CLOUDS)
def test_emulator_killed_mid_upload_then_retry_completes(cloud: str, emulators: Emulators,
                                                         bundle_variant: Callable[..., Bundle],
                                                         tmp_path: Path) -> None:
    bundle = bundle_variant(f"kill-{cloud}", mib=96)
    killer = _KillAfter(emulators, cloud, after=8 * 1024 * 1024)
    try:
        started = time.perf_counter()
        result = push_bundle(emulators.config(), bundle, [cloud], progress=killer)[cloud]
        assert killer.killed.is_set(), "the upload finished before the emulator could be killed"
        assert not result.ok and isinstance(result.error, Unreachable), result.error
        assert emulators.endpoint(cloud) in result.error.message and cloud in result.error.message
        assert "push again" in (result.error.hint or "")
        assert time.perf_counter() - started < 90
    finally:
        emulators.restart(cloud)
    provider = _provider(emulators, cloud)
    with provider.artifact_store() as store:  # the half-pushed bundle is not visible
        assert store.stat(LAYOUT.manifest_key(bundle.name, bundle.digest)) is None
    with pytest.raises(NotFound, match="no manifest"):
        pull_from_provider(provider, bundle.name, bundle.digest, tmp_path / "early")
    retry = push_bundle(emulators.config(), bundle, [cloud])[cloud]
    assert retry.ok and retry.verified, retry.error
    pull_from_provider(provider, bundle.name, bundle.digest, tmp_path / "out")
    assert _same_tree(bundle.path, tmp_path / "out")


@pytest.mark.slow
def test_one_emulator_down_others_complete_and_exit_nonzero(emulators: Emulators,
                                                            bundle_variant: Callable[..., Bundle],
                                                            tmp_path: Path) -> None:
    bundle = bundle_variant("one-down", mib=1)
    emulators.stand_in.stop(emulators.ctx, "gcp")
    try:
        proc = subprocess.run([MCO, "push", str(bundle.path), "--config", str(emulators.config_path),
                               "--output", "json"], capture_output=True, text=True, timeout=120)
    finally:
        emulators.restart("gcp")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)
    assert data["bundle_digest"] == bundle.digest
    for cloud in ("aws", "azure"):
        entry = data["clouds"][cloud]
        assert entry["verified"] is True and entry["bytes_uploaded"] > 0 and "error" not in entry
    gcp = data["clouds"]["gcp"]
    assert gcp["verified"] is False and gcp["error_kind"] == "Unreachable"
    endpoint = emulators.endpoint("gcp")
    assert endpoint in gcp["error"]
    assert "gcp" in proc.stderr and endpoint in proc.stderr.replace("\n", "")
    with pytest.raises(NotFound):
        pull_from_provider(_provider(emulators, "gcp"), bundle.name, bundle.digest, tmp_path / "out")


@pytest.mark.parametrize("cloud", ALL_CLOUDS)
def test_missing_bucket_is_named_with_a_fix(cloud: str, emulators: Emulators,
                                            bundle_variant: Callable[..., Bundle]) -> None:
    section = emulators.config().clouds[cloud].model_dump(exclude_none=True)
    section["storage"]["bucket"] = "mco-no-such-bucket"
    cfg = parse_config({"clouds": {cloud: section}})
    result = push_bundle(cfg, bundle_variant("nobucket"), [cloud])[cloud]
    assert isinstance(result.error, NotFound)
    assert "mco-no-such-bucket" in result.error.message and "does not exist" in result.error.message
    assert f"clouds.{cloud}.storage.bucket" in (result.error.hint or "")


@pytest.mark.parametrize("cloud", ALL_CLOUDS)
def test_manifest_escaping_the_prefix_is_refused(cloud: str, emulators: Emulators,
                                                 bundle_variant: Callable[..., Bundle], tmp_path: Path) -> None:
    bundle = bundle_variant(f"escape-{cloud}")
    provider = _provider(emulators, cloud)
    assert push_bundle(emulators.config(), bundle, [cloud])[cloud].ok
    mkey = LAYOUT.manifest_key(bundle.name, bundle.digest)
    with provider.artifact_store() as store:
        manifest = json.loads(store.get_bytes(mkey))
        manifest["files"]["../../../outside.txt"] = {"sha256": "0" * 64, "size": 1}
        store.put_bytes(mkey, json.dumps(manifest).encode())
        with pytest.raises(IntegrityError, match="could escape"):
            store.put_bytes("mco/../escaped.json", b"{}")
    with pytest.raises(IntegrityError, match=r"refusing file name in the manifest '../../../outside.txt'"):
        pull_from_provider(provider, bundle.name, bundle.digest, tmp_path / "x" / "out")
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "x" / "out").exists()


def test_cli_push_and_pull_round_trip(emulators: Emulators, bundle_variant: Callable[..., Bundle],
                                      tmp_path: Path) -> None:
    bundle = bundle_variant("cli")
    cfg = str(emulators.config_path)
    first = subprocess.run([MCO, "push", str(bundle.path), "--config", cfg, "--output", "json"],
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert set(data["clouds"]) >= set(ALL_CLOUDS)
    for cloud in ALL_CLOUDS:
        assert {"uri", "bytes_uploaded", "skipped", "verified"} <= set(data["clouds"][cloud])
    second = json.loads(subprocess.run([MCO, "push", str(bundle.path), "--config", cfg, "--output", "json"],
                                       capture_output=True, text=True, timeout=120, check=True).stdout)
    assert all(second["clouds"][c]["bytes_uploaded"] == 0 for c in ALL_CLOUDS)
    out = tmp_path / "p"
    proc = subprocess.run([MCO, "pull", f"{bundle.name}@{bundle.digest}", "--cloud", "gcp", "--out", str(out),
                           "--config", cfg, "--output", "json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["bundle_digest"] == bundle.digest
    assert _same_tree(bundle.path, out)
    # no secret in what mco prints
    assert "Eby8vdM02x" not in first.stdout + first.stderr + proc.stdout + proc.stderr


def test_provider_for_emulator_config_uses_no_secret_from_the_file(emulators: Emulators) -> None:
    text = emulators.config_path.read_text()
    assert "Eby8vdM02x" not in text and "AccountKey" not in text and "secret" not in text.lower()
    for cloud in ALL_CLOUDS:
        provider = get_provider(cloud, emulators.config().clouds[cloud])
        with provider.artifact_store() as store:
            assert store.endpoint == emulators.endpoint(cloud)


def test_wrong_azure_key_is_access_denied_and_the_key_is_not_echoed(emulators: Emulators,
                                                                    bundle_variant: Callable[..., Bundle],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    from orchestrator.errors import AccessDenied

    wrong_key = base64.b64encode(b"not-the-azurite-key-" * 3).decode()
    endpoint = emulators.endpoint("azure")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                       f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={wrong_key};"
                       f"BlobEndpoint={endpoint};")
    cfg = parse_config({"clouds": {"azure": {"provider": "azure", "storage": {"bucket": "mco-models"}}}})
    result = push_bundle(cfg, bundle_variant("denied"), ["azure"])["azure"]
    assert isinstance(result.error, AccessDenied), result.error
    assert "AZURE_STORAGE_CONNECTION_STRING" in (result.error.hint or "")
    assert wrong_key not in result.error.message + (result.error.hint or "")
