"""A bundle holds only its own regular files: a card that names a file outside the bundle
(absolute, ``..``, a symlink anywhere on the path, a FIFO) is refused by ``verify_bundle``,
by ``mco push`` and by packaging, even when every digest was recomputed to match."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.artifacts.push import bundle_files
from orchestrator.errors import IntegrityError
from orchestrator.model.bundle import (
    Bundle,
    compute_bundle_digest,
    load_bundle,
    write_card,
)
from orchestrator.model.digests import sha256_file
from tests.conftest import copy_bundle

MCO = [sys.executable, "-m", "orchestrator.cli.main"]
SECRET = "root:x:0:0:not a bundle file\n"


def _relist(root: Path, rel: str, target: Path) -> None:
    """Edit the card to list ``rel`` with ``target``'s digest and recompute the bundle digest,
    as an attacker who controls the bundle directory would."""
    card = json.loads((root / "card.json").read_text())
    card["files"][rel] = sha256_file(target)
    card["bundle_digest"] = compute_bundle_digest(card)
    (root / "card.json").write_text(json.dumps(card))


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "passwd"
    path.parent.mkdir()
    path.write_text(SECRET)
    return path


@pytest.fixture
def bundle_dir(digits_bundle: Bundle, tmp_path: Path) -> Path:
    return copy_bundle(digits_bundle, tmp_path / "b")


def test_a_listed_symlink_to_a_file_outside_is_refused(bundle_dir, secret):
    (bundle_dir / "plots" / "leak.png").symlink_to(secret)
    _relist(bundle_dir, "plots/leak.png", secret)
    with pytest.raises(IntegrityError, match=r"leak\.png is a symlink"):
        load_bundle(bundle_dir)


def test_a_symlinked_directory_on_the_path_is_refused(bundle_dir, secret):
    (bundle_dir / "extra").symlink_to(secret.parent, target_is_directory=True)
    _relist(bundle_dir, "extra/passwd", secret)
    with pytest.raises(IntegrityError, match="extra is a symlink"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize(("name", "reason"), [
    ("../outside/passwd", "'..' segment"),
    ("plots/../../outside/passwd", "'..' segment"),
    ("ABSOLUTE", "is absolute"),
    ("plots//x", "empty"),
    ("plots\\x", "backslash"),
])
def test_names_that_could_escape_are_refused(bundle_dir, secret, name, reason):
    name = str(secret) if name == "ABSOLUTE" else name
    _relist(bundle_dir, name, secret)
    with pytest.raises(IntegrityError, match=reason):
        load_bundle(bundle_dir)


def test_a_fifo_is_not_a_regular_file(bundle_dir, secret):
    os.mkfifo(bundle_dir / "plots" / "pipe.png")
    _relist(bundle_dir, "plots/pipe.png", secret)
    with pytest.raises(IntegrityError, match="not a regular file"):
        load_bundle(bundle_dir)


def test_a_symlinked_card_is_refused(bundle_dir, tmp_path):
    real = tmp_path / "card.json"
    (bundle_dir / "card.json").rename(real)
    (bundle_dir / "card.json").symlink_to(real)
    with pytest.raises(IntegrityError, match=r"card\.json is a symlink"):
        load_bundle(bundle_dir)


def test_files_the_card_does_not_list_are_ignored(bundle_dir, secret):
    (bundle_dir / "notes.txt").write_text("not part of the bundle")
    (bundle_dir / "link").symlink_to(secret)
    bundle = load_bundle(bundle_dir)  # verifies fine: only listed files are read
    assert {f.rel for f in bundle_files(bundle)} == {"card.json", *bundle.files()}


def test_the_model_and_holdout_must_be_listed(bundle_dir):
    card = json.loads((bundle_dir / "card.json").read_text())
    card["evaluation"]["data"] = "../outside/passwd"
    card["bundle_digest"] = compute_bundle_digest(card)
    (bundle_dir / "card.json").write_text(json.dumps(card))
    with pytest.raises(IntegrityError, match="does not list it"):
        load_bundle(bundle_dir)


def test_write_card_refuses_a_symlink_in_the_tree(bundle_dir, secret):
    (bundle_dir / "plots" / "leak.png").symlink_to(secret)
    card = json.loads((bundle_dir / "card.json").read_text())
    with pytest.raises(IntegrityError, match="symlink"):
        write_card(bundle_dir, card)


def test_mco_push_never_publishes_a_file_from_outside(bundle_dir, secret, tmp_path):
    (bundle_dir / "plots" / "leak.png").symlink_to(secret)
    _relist(bundle_dir, "plots/leak.png", secret)
    store = tmp_path / "store"
    config = tmp_path / "mco.yaml"
    config.write_text(f"clouds:\n  disk:\n    provider: local\n    storage: {{bucket: {store}, prefix: p}}\n")
    run = subprocess.run([*MCO, "push", str(bundle_dir), "--config", str(config), "--output", "json"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode != 0
    assert "symlink" in run.stdout + run.stderr and "Traceback" not in run.stderr
    published = [p for p in store.rglob("*") if p.is_file()] if store.exists() else []
    assert not any(p.read_bytes() == SECRET.encode() for p in published)
