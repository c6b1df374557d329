"""Pull a bundle from one cloud's object store, verified, into a directory.

Only a bundle whose manifest exists is trusted (the manifest is written last by push).
Every file the manifest names is checked to stay inside the bundle directory, downloaded
into a temporary sibling of the destination, and its sha256 compared with the manifest;
then the whole bundle is checked again with ``load_bundle`` (card digest, every file) and
must carry the requested digest. Only then is it renamed into place: a failed or tampered
pull leaves nothing at the destination.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from orchestrator.artifacts.layout import MANIFEST_SCHEMA, BundleLayout, check_name, check_relative_key
from orchestrator.config import CloudConfig, StorageConfig
from orchestrator.errors import ConfigError, IntegrityError, ModelError, NotFound
from orchestrator.model.bundle import CARD_FILE, Bundle, load_bundle
from orchestrator.model.digests import sha256_file
from orchestrator.providers.base import ArtifactStore, Progress, Provider

__all__ = ["pull_bundle", "pull_from_provider", "pull_from_storage", "read_manifest"]


def _resolve_name(store: ArtifactStore, layout: BundleLayout, digest: str) -> str:
    key = layout.digest_key(digest)
    try:
        pointer = json.loads(store.get_bytes(key))
        return check_name(str(pointer["name"]))
    except NotFound:
        raise NotFound(f"{store.cloud}: no bundle with digest sha256:{digest[:12]}… in {store.uri(layout.prefix)}",
                       cloud=store.cloud, hint="check the digest, or pull from another --cloud") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{store.cloud}: {store.uri(key)} is not a valid digest pointer",
                             hint="push the bundle again to rewrite it") from exc


def read_manifest(store: ArtifactStore, layout: BundleLayout, name: str, digest: str) -> dict[str, Any]:
    key = layout.manifest_key(name, digest)
    try:
        raw = store.get_bytes(key)
    except NotFound:
        raise NotFound(f"{store.cloud}: bundle {name}@sha256:{digest[:12]}… is not available at {store.uri(key)}: "
                       "it has no manifest (never pushed there, or a push did not finish)", cloud=store.cloud,
                       hint="push it with `mco push BUNDLE`, or pull from another --cloud") from None
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
        ok = (manifest.get("schema") == MANIFEST_SCHEMA and manifest.get("name") == name
              and manifest.get("bundle_digest") == digest and isinstance(files, dict) and CARD_FILE in files)
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise IntegrityError(f"{store.cloud}: {store.uri(key)} is not a valid manifest for {name}@sha256:{digest[:12]}…",
                             hint="push the bundle again")
    for rel, entry in files.items():
        check_relative_key(rel, what="file name in the manifest")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise IntegrityError(f"{store.cloud}: manifest entry for '{rel}' has no sha256", hint="push the bundle again")
    return dict(manifest)


def _existing(out: Path, digest: str) -> Bundle | None:
    """A verified bundle with ``digest`` already at ``out``; None if ``out`` is absent or empty."""
    if not out.exists():
        return None
    if out.is_dir() and not any(out.iterdir()):
        return None
    try:
        bundle = load_bundle(out, verify=True)
    except ModelError:
        bundle = None
    if bundle is not None and bundle.digest == digest:
        return bundle
    raise ConfigError(f"{out} already exists and is not the bundle sha256:{digest[:12]}…",
                      hint="choose another --out directory, or remove this one")


def pull_bundle(store: ArtifactStore, layout: BundleLayout, name: str | None, digest: str, out: Path, *,
                progress: Progress | None = None) -> Bundle:
    """Download ``name@digest`` (name looked up by digest when None) into ``out``, verified."""
    out = Path(out)
    if name is None:
        name = _resolve_name(store, layout, digest)
    manifest = read_manifest(store, layout, name, digest)
    found = _existing(out, digest)
    if found is not None:
        return found
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.pull-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        root = tmp.resolve()
        for rel, entry in sorted(manifest["files"].items()):
            dest = tmp / rel
            if not dest.resolve().is_relative_to(root):
                raise IntegrityError(f"refusing manifest file name '{rel}': it resolves outside {out}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            key = layout.file_key(name, digest, rel)
            store.get_file(key, dest, progress=progress)
            got = sha256_file(dest)
            if got != entry["sha256"]:
                raise IntegrityError(
                    f"{store.cloud}: {store.uri(key)} has sha256 {got[:12]}…, but the manifest records "
                    f"{entry['sha256'][:12]}…; the stored object is corrupted",
                    hint="push the bundle again to repair it, or pull from another --cloud")
        bundle = load_bundle(tmp, verify=True)
        if bundle.digest != digest or set(bundle.files()) | {CARD_FILE} != set(manifest["files"]):
            raise IntegrityError(f"{store.cloud}: the bundle stored as sha256:{digest[:12]}… carries digest "
                                 f"{bundle.digest[:12]}… or a different file list", hint="push the bundle again")
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load_bundle(out, verify=False)


def pull_from_provider(provider: Provider, name: str | None, digest: str, out: Path, *,
                       progress: Progress | None = None) -> Bundle:
    layout = BundleLayout(provider.storage_config().prefix)
    with provider.artifact_store() as store:
        return pull_bundle(store, layout, name, digest, out, progress=progress)


def pull_from_storage(provider: str, storage: StorageConfig, ref: str, dest: Path, *, cloud: str | None = None) -> Path:
    """For code that has only a storage section (e.g. the model image fetching at startup).

    ``ref`` is ``NAME@DIGEST`` or a bare digest (``sha256:…`` or hex).
    """
    from orchestrator.artifacts.layout import parse_ref
    from orchestrator.providers.loader import get_provider

    name, digest = parse_ref(ref)
    prov = get_provider(cloud or provider, CloudConfig(provider=provider, storage=storage))
    return pull_from_provider(prov, name, digest, Path(dest)).path
