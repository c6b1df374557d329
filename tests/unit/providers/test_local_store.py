"""Push and pull through the filesystem store (the embedded default): the same code path as the clouds."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest

from orchestrator.artifacts.layout import BundleLayout
from orchestrator.artifacts.pull import pull_from_provider
from orchestrator.artifacts.push import DEFAULT_LOCAL_CLOUD, push_bundle
from orchestrator.config import MCOConfig, parse_config
from orchestrator.errors import IntegrityError, NotFound
from orchestrator.model.bundle import Bundle, compute_bundle_digest, load_bundle
from orchestrator.providers.loader import get_provider
from tests.conftest import copy_bundle


def _config(root: Path) -> MCOConfig:
    return parse_config({"clouds": {"disk": {"provider": "local", "storage": {"bucket": str(root), "prefix": "p"}}}})


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    return all(_same_tree(a / d, b / d) for d in cmp.common_dirs)


def test_push_is_idempotent_and_pull_is_byte_identical(digits_bundle: Bundle, tmp_path: Path) -> None:
    cfg = _config(tmp_path / "store")
    first = push_bundle(cfg, digits_bundle)["disk"]
    assert first.ok and first.verified and first.bytes_uploaded > 0 and first.skipped == 0
    second = push_bundle(cfg, digits_bundle)["disk"]
    assert second.ok and second.bytes_uploaded == 0 and second.uploaded == 0
    assert second.skipped == len(digits_bundle.files()) + 1
    provider = get_provider("disk", cfg.clouds["disk"])
    pulled = pull_from_provider(provider, None, digits_bundle.digest, tmp_path / "out")  # found by digest alone
    assert pulled.digest == digits_bundle.digest
    assert _same_tree(digits_bundle.path, tmp_path / "out")
    index = json.loads((tmp_path / "store/p/models" / digits_bundle.name / "index.json").read_text())
    assert [v["digest"] for v in index["versions"]] == [digits_bundle.digest]


def test_corrupted_object_is_detected_on_pull_and_nothing_appears(digits_bundle: Bundle, tmp_path: Path) -> None:
    cfg = _config(tmp_path / "store")
    assert push_bundle(cfg, digits_bundle)["disk"].ok
    key = BundleLayout("p").file_key(digits_bundle.name, digits_bundle.digest, "model.onnx")
    stored = tmp_path / "store" / key
    data = bytearray(stored.read_bytes())
    data[100] ^= 0xFF
    stored.write_bytes(bytes(data))
    provider = get_provider("disk", cfg.clouds["disk"])
    with pytest.raises(IntegrityError, match=r"model.onnx has sha256 .* the stored object is corrupted"):
        pull_from_provider(provider, digits_bundle.name, digits_bundle.digest, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.pull-*"))
    # A re-push notices the object no longer matches what was recorded, and repairs it.
    repaired = push_bundle(cfg, digits_bundle)["disk"]
    assert repaired.ok and repaired.uploaded == 1
    pull_from_provider(provider, digits_bundle.name, digits_bundle.digest, tmp_path / "out")


def test_manifest_naming_a_file_outside_the_bundle_is_refused(digits_bundle: Bundle, tmp_path: Path) -> None:
    cfg = _config(tmp_path / "store")
    assert push_bundle(cfg, digits_bundle)["disk"].ok
    mpath = tmp_path / "store" / BundleLayout("p").manifest_key(digits_bundle.name, digits_bundle.digest)
    manifest = json.loads(mpath.read_text())
    manifest["files"]["../../../../evil.sh"] = {"sha256": "0" * 64, "size": 1}
    mpath.write_text(json.dumps(manifest))
    provider = get_provider("disk", cfg.clouds["disk"])
    with pytest.raises(IntegrityError, match=r"refusing file name in the manifest '../../../../evil.sh'"):
        pull_from_provider(provider, digits_bundle.name, digits_bundle.digest, tmp_path / "out")
    assert not (tmp_path / "evil.sh").exists() and not (tmp_path / "out").exists()


def test_bundle_card_naming_a_file_outside_the_prefix_is_refused(digits_bundle: Bundle, tmp_path: Path) -> None:
    root = copy_bundle(digits_bundle, tmp_path / "b")
    card = json.loads((root / "card.json").read_text())
    (tmp_path / "secret").write_text("x")
    card["files"]["../secret"] = "0" * 64
    card["bundle_digest"] = compute_bundle_digest(card)  # a self-consistent but hostile card
    (root / "card.json").write_text(json.dumps(card))
    result = push_bundle(_config(tmp_path / "store"), load_bundle(root, verify=False))["disk"]
    assert not result.ok
    assert isinstance(result.error, IntegrityError)
    assert "'../secret'" in result.error.message
    assert not list((tmp_path / "store").rglob("manifest.json"))


def test_tampered_local_file_is_not_published(digits_bundle: Bundle, tmp_path: Path) -> None:
    root = copy_bundle(digits_bundle, tmp_path / "b")
    with open(root / "model.onnx", "r+b") as fh:
        fh.seek(50)
        fh.write(b"\x00\x01\x02")
    result = push_bundle(_config(tmp_path / "store"), load_bundle(root, verify=False))["disk"]
    assert isinstance(result.error, IntegrityError) and "not published" in result.error.message
    assert not list((tmp_path / "store").rglob("manifest.json"))
    assert not list((tmp_path / "store").rglob("model.onnx"))


def test_pull_of_a_bundle_without_manifest_is_not_found(digits_bundle: Bundle, tmp_path: Path) -> None:
    cfg = _config(tmp_path / "store")
    provider = get_provider("disk", cfg.clouds["disk"])
    with pytest.raises(NotFound, match="no manifest"):
        pull_from_provider(provider, digits_bundle.name, digits_bundle.digest, tmp_path / "out")


def test_embedded_default_is_a_local_store_under_the_state_dir(digits_bundle: Bundle, tmp_path: Path) -> None:
    path = tmp_path / "mco.yaml"
    path.write_text("project: {name: t}\n")
    from orchestrator.config import load_config

    results = push_bundle(load_config(path), digits_bundle)
    assert list(results) == [DEFAULT_LOCAL_CLOUD] and results[DEFAULT_LOCAL_CLOUD].ok
    assert list((tmp_path / ".mco/artifacts/models" / digits_bundle.name / digits_bundle.digest).glob("manifest.json"))
