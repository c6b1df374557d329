"""Push a model bundle to every configured cloud's object store, in parallel.

Per cloud (one thread each; one cloud's failure never stops the others):

1. ``stat`` every bundle file's key; a file already there with the same sha256 (recorded in
   the object's metadata) and size is skipped, so re-pushing an unchanged bundle uploads
   nothing.
2. Upload the rest, the largest first, several at once (large files go up in parallel
   parts). mco's digests of a file (sha256 plus the checksum each target cloud reports:
   CRC32 for S3, CRC32C for GCS, MD5 for an Azure Put Blob) come from one read of it,
   whatever the number of clouds, made while the first bytes are already on the wire. Each
   store compares the checksum the cloud computed (from the upload's response where it has
   one) with them. A file whose sha256 does not match the bundle card is deleted again and
   the push fails: a damaged local bundle never becomes visible. The digest pointer (digest
   to name; not a visibility marker) goes up beside the files.
3. Write the manifest, last: until it exists, readers (``pull``) do not see the bundle.
   Then the model's version index.

The result per cloud is a ``CloudPush``; the CLI merges these (and, in other steps, image
pushes) into ``{"bundle_digest", "clouds": {cloud: {...}}}``.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from orchestrator.artifacts.digests import DigestCache
from orchestrator.artifacts.layout import MANIFEST_SCHEMA, BundleLayout
from orchestrator.config import CloudConfig, MCOConfig, StorageConfig
from orchestrator.errors import ConfigError, IntegrityError, MCOError, NotFound, ProviderError
from orchestrator.model.bundle import CARD_FILE, Bundle, compute_bundle_digest, member_path
from orchestrator.model.digests import canonical_json, sha256_bytes, sha256_file
from orchestrator.providers.base import Provider

__all__ = [
    "DEFAULT_LOCAL_CLOUD",
    "BundleFile",
    "CloudPush",
    "PushProgress",
    "bundle_files",
    "manifest_bytes",
    "push_bundle",
    "push_to_provider",
    "storage_providers",
]

DEFAULT_LOCAL_CLOUD = "local"


class PushProgress(Protocol):
    """Receives progress per cloud; called from worker threads."""

    def start(self, cloud: str, total: int) -> None: ...

    def advance(self, cloud: str, n: int) -> None: ...

    def finish(self, cloud: str, ok: bool, note: str) -> None: ...


@dataclass(frozen=True)
class BundleFile:
    rel: str
    path: Path
    sha256: str
    size: int


@dataclass
class CloudPush:
    cloud: str
    uri: str = ""
    endpoint: str = ""
    bytes_uploaded: int = 0
    uploaded: int = 0
    skipped: int = 0
    verified: bool = False
    verification: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: MCOError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "uri": self.uri, "endpoint": self.endpoint, "bytes_uploaded": self.bytes_uploaded,
            "uploaded": self.uploaded, "skipped": self.skipped, "verified": self.verified,
            "verification": sorted(self.verification), "seconds": round(self.seconds, 3),
        }
        if self.error is not None:
            # Nothing this push wrote is visible there: the manifest was not written.
            out.update(error=self.error.message, error_kind=type(self.error).__name__, hint=self.error.hint)
        else:
            out["visible"] = True  # the manifest is in place: pulls see the bundle
        return out


def bundle_files(bundle: Bundle) -> list[BundleFile]:
    """The card plus every file it lists, after checking the card's own digest (cheap).

    File contents are checked against the card while they upload (see module docstring),
    so a re-push of an unchanged bundle does not hash hundreds of megabytes.
    """
    if compute_bundle_digest(bundle.card) != bundle.digest:
        raise IntegrityError(f"{bundle.path / CARD_FILE} was modified: it no longer matches its bundle digest",
                             hint="do not edit a bundle by hand; retrain it")
    card = member_path(bundle.path, CARD_FILE)
    out = [BundleFile(CARD_FILE, card, sha256_file(card), card.stat().st_size)]
    for rel, sha in sorted(bundle.files().items()):
        path = member_path(bundle.path, rel)  # never a file from outside the bundle (no symlinks, no '..')
        out.append(BundleFile(rel, path, sha, path.stat().st_size))
    return out


def manifest_bytes(bundle: Bundle, files: list[BundleFile]) -> bytes:
    """Deterministic (no timestamp), so an unchanged bundle's manifest is never rewritten."""
    return canonical_json({
        "schema": MANIFEST_SCHEMA,
        "name": bundle.name,
        "bundle_digest": bundle.digest,
        "files": {f.rel: {"sha256": f.sha256, "size": f.size} for f in files},
    })


def storage_providers(config: MCOConfig, clouds: list[str] | None = None) -> dict[str, Provider]:
    """Providers for the chosen clouds, or every cloud with storage; the local store if none is configured."""
    from orchestrator.providers.loader import get_provider, providers_for

    if clouds:
        return providers_for(config, clouds)
    found = providers_for(config)
    if found:
        return found
    if config.clouds:
        raise ConfigError(f"no cloud in {config.source or 'the config'} has a storage section",
                          hint="add clouds.<cloud>.storage: {bucket: NAME}, or run `mco local up storage`")
    # The embedded default: a directory under the project's state dir.
    base = Path(config.source).resolve().parent if config.source else Path.cwd()
    root = config.project.state_dir if config.project.state_dir.is_absolute() else base / config.project.state_dir
    local = CloudConfig(provider="local", storage=StorageConfig(bucket=str(root / "artifacts"), prefix=""))
    return {DEFAULT_LOCAL_CLOUD: get_provider(DEFAULT_LOCAL_CLOUD, local, base_dir=base)}


def _same(info: Any, sha256: str, size: int) -> bool:
    return info is not None and info.sha256 == sha256 and info.size == size


FILE_WORKERS = 4  # files in flight per cloud; each large file is itself split into parallel parts


def push_to_provider(provider: Provider, bundle: Bundle, files: list[BundleFile], *, digests: DigestCache,
                     progress: PushProgress | None = None) -> CloudPush:
    """Push one bundle to one cloud; errors are returned in the result, never raised."""
    cloud = provider.cloud
    result = CloudPush(cloud)
    started = time.perf_counter()
    try:
        storage = provider.storage_config()
        result.endpoint = storage.endpoint or ""
        layout = BundleLayout(storage.prefix)
        keys = {f.rel: layout.file_key(bundle.name, bundle.digest, f.rel) for f in files}  # refuses escapes
        mkey = layout.manifest_key(bundle.name, bundle.digest)
        manifest = manifest_bytes(bundle, files)
        with provider.artifact_store() as store, ThreadPoolExecutor(FILE_WORKERS, f"mco-{cloud}") as pool:
            result.endpoint = store.endpoint
            result.uri = store.uri(layout.bundle_dir(bundle.name, bundle.digest)) + "/"
            # One listing of the bundle's directory (plus a stat per listed object where the
            # listing lacks metadata): objects already there with the card's sha256 are skipped,
            # which also resumes an interrupted push.
            existing = store.list_info(layout.bundle_dir(bundle.name, bundle.digest) + "/")
            todo = [f for f in files if not _same(existing.get(keys[f.rel]), f.sha256, f.size)]
            result.skipped = len(files) - len(todo)
            if result.skipped:
                result.verification.append("existing:sha256-metadata")
            sources = {f.rel: digests.source(f.path) for f in todo}  # hashing starts now, beside the uploads
            if progress is not None:
                progress.start(cloud, sum(f.size for f in todo))

            def advance(n: int) -> None:
                if progress is not None:
                    progress.advance(cloud, n)

            def upload(f: BundleFile) -> str:
                uploaded = store.put_file(keys[f.rel], f.path, sha256=f.sha256, size=f.size,
                                          digests=sources[f.rel], progress=advance)
                local = sources[f.rel]()
                if local.sha256 != f.sha256 or local.size != f.size:
                    store.delete(keys[f.rel])
                    raise IntegrityError(f"{f.path} has sha256 {local.sha256[:12]}…, but the bundle card records "
                                         f"{f.sha256[:12]}…; the file was changed or corrupted, so it was not published",
                                         hint="refusing to publish a tampered model; train the bundle again")
                return uploaded.verified

            # Largest first: the longest upload starts at once and the small files fill in beside it.
            futures = [(f, pool.submit(upload, f)) for f in sorted(todo, key=lambda f: -f.size)]
            new_manifest = not _same(existing.get(mkey), sha256_bytes(manifest), len(manifest))
            pointer = canonical_json({"name": bundle.name, "bundle_digest": bundle.digest})
            # The digest pointer is not a visibility marker (a pull by digest still needs the
            # manifest), so it goes up beside the files instead of adding a round trip after them.
            # An unchanged manifest means it was written before.
            pointed = pool.submit(store.put_bytes, layout.digest_key(bundle.digest), pointer) if new_manifest else None
            # the version index is read beside the uploads; it is written after the manifest
            index_read = pool.submit(_read_index, store, layout, bundle)
            errors = []
            for f, fut in futures:  # wait for every upload, so none is still running when we report
                try:
                    result.verification.append(fut.result())
                    result.bytes_uploaded += f.size
                    result.uploaded += 1
                except MCOError as exc:
                    errors.append(exc)
            if pointed is not None:
                try:
                    pointed.result()
                    result.bytes_uploaded += len(pointer)
                except MCOError as exc:
                    errors.append(exc)
            if errors:
                raise errors[0]
            if new_manifest:  # last: it makes the bundle visible
                result.verification.append(store.put_bytes(mkey, manifest).verified)
                result.bytes_uploaded += len(manifest)
            result.bytes_uploaded += _add_to_index(store, layout, bundle, index_read.result())
            result.verified = True
            result.verification = sorted(set(result.verification))
    except MCOError as exc:
        result.error = exc
    except Exception as exc:  # an SDK error a provider failed to translate: still one cloud's failure
        result.error = ProviderError(f"{cloud}: push failed: {type(exc).__name__}: {exc}", cloud=cloud)
    result.seconds = time.perf_counter() - started
    if progress is not None:
        progress.finish(cloud, result.ok, "" if result.ok else result.error.message if result.error else "")
    return result


def _read_index(store: Any, layout: BundleLayout, bundle: Bundle) -> dict[str, Any]:
    """The model's version index as stored; empty if there is none or it is not an index."""
    try:
        index = json.loads(store.get_bytes(layout.index_key(bundle.name)))
    except (NotFound, ValueError):
        return {}
    return index if isinstance(index, dict) and isinstance(index.get("versions"), list) else {}


def _add_to_index(store: Any, layout: BundleLayout, bundle: Bundle, index: dict[str, Any]) -> int:
    """Append the digest to the model's version ``index`` (as read by ``_read_index``) unless
    it is listed. Returns bytes written.

    Read-modify-write without a lock: two concurrent pushes of different versions may drop
    one entry from the index (never a bundle); the next push of it restores the entry.
    """
    key = layout.index_key(bundle.name)
    versions = index.get("versions", [])
    if any(isinstance(v, dict) and v.get("digest") == bundle.digest for v in versions):
        return 0
    versions.append({"digest": bundle.digest, "pushed_at": datetime.now(UTC).isoformat(timespec="seconds")})
    body = json.dumps({"name": bundle.name, "versions": versions}, indent=1).encode()
    store.put_bytes(key, body)
    return len(body)


def push_bundle(config: MCOConfig, bundle: Bundle, clouds: list[str] | None = None, *,
                progress: PushProgress | None = None) -> dict[str, CloudPush]:
    """Push ``bundle`` to the chosen clouds (default: every cloud with storage), all at once."""
    providers = storage_providers(config, clouds)
    try:
        files = bundle_files(bundle)
    except IntegrityError as exc:  # a hostile or damaged bundle: refused for every cloud, nothing written
        return {name: CloudPush(name, error=exc) for name in providers}
    kinds = {f.path: frozenset().union(*(p.upload_digests_for(f.size) for p in providers.values())) for f in files}
    with DigestCache(kinds) as digests, ThreadPoolExecutor(max_workers=len(providers),
                                                       thread_name_prefix="mco-push") as pool:
        futures = {name: pool.submit(push_to_provider, p, bundle, files, digests=digests, progress=progress)
                   for name, p in providers.items()}
        return {name: fut.result() for name, fut in futures.items()}
