"""Model bundles: a directory with ``model.onnx``, ``card.json`` and plots.

The card lists every other file with its sha256. The bundle digest is the sha256 of
the canonical card without its own ``bundle_digest`` field, so it covers every file
and every word of the card; change one byte anywhere and the digest changes.

A digest proves that bytes are unchanged, not where they come from: a card may list
``plots/x.png`` as a symlink to ``/etc/passwd`` with the digest recomputed. So every name a
card lists must be a plain relative path (no leading ``/``, no ``..``, ``.`` or empty segment,
no backslash or NUL), and every path component must be, by ``lstat``, a real directory or, last,
a regular file: no symlinks anywhere. ``member_path`` is the one way in; files the card does not
list are ignored (nothing reads, hashes, pushes or packages them).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import IntegrityError, ModelError
from orchestrator.model.digests import canonical_json, sha256_bytes, sha256_file
from orchestrator.names import unsafe_name_reason

__all__ = [
    "CARD_FILE",
    "MODEL_FILE",
    "Bundle",
    "compute_bundle_digest",
    "list_bundle_files",
    "load_bundle",
    "member_path",
    "staged_bundle",
    "verify_bundle",
    "write_card",
]

CARD_FILE = "card.json"
MODEL_FILE = "model.onnx"


@dataclass(frozen=True)
class Bundle:
    path: Path
    card: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.card["name"])

    @property
    def digest(self) -> str:
        return str(self.card["bundle_digest"])

    @property
    def model_sha256(self) -> str:
        return str(self.card["model"]["sha256"])

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def ref(self) -> str:
        """``name@sha256:digest``: how pushes, pulls and releases name a bundle."""
        return f"{self.name}@sha256:{self.digest}"

    def files(self) -> dict[str, str]:
        """Relative path -> sha256, card excluded."""
        return dict(self.card["files"])

    def total_bytes(self) -> int:
        """The size of the card and every file it lists."""
        return sum(member_path(self.path, rel).stat().st_size for rel in [CARD_FILE, *self.files()])


def member_path(root: Path, rel: str) -> Path:
    """``root / rel`` once ``rel`` is a plain relative name whose every component is, by ``lstat``,
    a directory and, last, a regular file; ``IntegrityError`` otherwise (``ModelError`` if missing)."""
    reason = unsafe_name_reason(rel)
    if reason is not None:
        raise IntegrityError(f"the bundle card lists '{rel}', which {reason}, so it could name a file "
                             f"outside the bundle {root}",
                             hint="a bundle lists only plain relative paths inside it; retrain or pull it again")
    path = root
    parts = rel.split("/")
    for i, part in enumerate(parts):
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            raise IntegrityError(f"bundle file {path} is missing", hint="pull or train the bundle again") from None
        last = i == len(parts) - 1
        if stat.S_ISLNK(mode):
            raise IntegrityError(f"bundle file {root / rel}: {path} is a symlink; a bundle holds only regular files",
                                 hint="copy the file into the bundle instead of linking it, then retrain")
        if not (stat.S_ISREG(mode) if last else stat.S_ISDIR(mode)):
            what = "a regular file" if last else "a directory"
            raise IntegrityError(f"bundle file {root / rel}: {path} is not {what}",
                                 hint="a bundle holds only regular files in plain directories")
    return path


def list_bundle_files(root: Path) -> list[str]:
    """Every regular file below ``root`` except the card, as sorted POSIX paths.

    A symlink or other special file anywhere below ``root`` is refused, not followed."""
    out: list[str] = []
    for dirpath, dirs, files in os.walk(root):
        for dname in dirs:  # os.walk lists a symlinked directory here but does not enter it
            if (Path(dirpath) / dname).is_symlink():
                raise IntegrityError(f"{Path(dirpath) / dname} is a symlink; a bundle holds only regular files",
                                     hint="copy the files into the bundle instead of linking them")
        for fname in files:
            rel = (Path(dirpath) / fname).relative_to(root).as_posix()
            member_path(root, rel)
            if rel != CARD_FILE:
                out.append(rel)
    return sorted(out)


def compute_bundle_digest(card: dict[str, Any]) -> str:
    body = {k: v for k, v in card.items() if k != "bundle_digest"}
    return sha256_bytes(canonical_json(body))


def write_card(root: Path, card: dict[str, Any]) -> dict[str, Any]:
    """Fill in file digests and the bundle digest, then write ``card.json``."""
    card = dict(card)
    card["files"] = {rel: sha256_file(root / rel) for rel in list_bundle_files(root)}
    card["model"] = {**card.get("model", {}), "file": MODEL_FILE, "sha256": card["files"][MODEL_FILE]}
    card["bundle_digest"] = compute_bundle_digest(card)
    tmp = root / (CARD_FILE + ".tmp")
    tmp.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    tmp.replace(root / CARD_FILE)
    return card


def load_bundle(path: str | Path, *, verify: bool = True) -> Bundle:
    """Read a bundle; with ``verify`` every file's sha256 and the bundle digest are checked."""
    root = Path(path)
    card_path = root / CARD_FILE
    if not root.is_dir():
        raise ModelError(f"model bundle {root} does not exist or is not a directory",
                         hint="train one with `mco model train --out DIR`, or pull one with `mco pull`")
    if not card_path.is_file():
        raise ModelError(f"{root} has no {CARD_FILE}; it is not an mco model bundle",
                         hint="train one with `mco model train --out DIR`")
    member_path(root, CARD_FILE)  # a regular file, not a symlink to some other card
    try:
        card = json.loads(card_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{card_path} is not valid JSON: {exc}",
                         hint="the bundle is damaged; pull or train it again") from exc
    for key in ("name", "bundle_digest", "files", "model", "classes", "input_schema"):
        if key not in card:
            raise ModelError(f"{card_path} has no '{key}' field", hint="the bundle is damaged; pull or train it again")
    bundle = Bundle(root, card)
    if verify:
        verify_bundle(bundle)
    return bundle


def verify_bundle(bundle: Bundle) -> None:
    root = bundle.path
    expected_digest = compute_bundle_digest(bundle.card)
    if expected_digest != bundle.digest:
        raise IntegrityError(
            f"{root / CARD_FILE} was modified: its content hashes to {expected_digest[:12]}…, "
            f"not the recorded bundle digest {bundle.digest[:12]}…",
            hint="do not edit a bundle by hand; retrain or pull it again",
        )
    files = bundle.files()
    for rel in (MODEL_FILE, bundle.card.get("evaluation", {}).get("data")):
        if rel is not None and rel not in files:  # what serve and evaluate read must be covered by a digest
            raise IntegrityError(f"{root / CARD_FILE} names '{rel}' but does not list it among its files",
                                 hint="the bundle is damaged; retrain or pull it again")
    for rel, want in files.items():
        file_path = member_path(root, rel)
        got = sha256_file(file_path)
        if got != want:
            raise IntegrityError(
                f"{file_path} has sha256 {got[:12]}…, but the card records {want[:12]}…; "
                "the file was changed or corrupted",
                hint="refusing to use a tampered model; pull or train the bundle again",
            )


@contextmanager
def staged_bundle(out: Path) -> Iterator[Path]:
    """A staging directory beside ``out`` that replaces it when the block succeeds.

    A half-written bundle never exists under ``out``, and a directory that is not a
    bundle (no card) is never deleted.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / CARD_FILE).is_file())):
        raise ModelError(f"{out} exists and is not an mco model bundle",
                         hint="choose an empty or new --out directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mco-bundle-", dir=out.parent))
    try:
        yield staging
        if out.exists():
            shutil.rmtree(out)
        staging.replace(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
