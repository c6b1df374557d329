"""Local: a directory as the artifact store, the embedded default when no cloud is configured.

``storage.bucket`` is a directory (relative paths are resolved against the config file's
directory). Objects are written to a temporary name, fsynced and renamed, so a reader
never sees a partial file; each object's sha256 and size are kept in a sidecar under
``.mco-meta/``. Verification re-reads the written file and compares its sha256 with ours.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from orchestrator.errors import IntegrityError, MCOError, NotFound, ProviderError, Unreachable
from orchestrator.providers.base import (
    ArtifactStore,
    Capability,
    DigestSource,
    ObjectInfo,
    Progress,
    Provider,
    UploadResult,
)

__all__ = ["FilesystemStore", "LocalProvider"]

_META = ".mco-meta"
_CHUNK = 1 << 20


class LocalProvider(Provider):
    name = "local"
    display_name = "local filesystem"
    overlay = "kind"  # a local "cloud" runs its model on a kind cluster
    unsupported: ClassVar[Mapping[Capability, str]] = {
        Capability.SERVER_VERIFIED_UPLOAD: "a directory has no server; mco re-reads each written file and compares sha256s",
        Capability.MULTIPART_UPLOAD: "files are copied whole; a failed copy leaves only a temporary file behind",
        Capability.CONDITIONAL_WRITE: "a directory is one machine's disk; the replicated release state needs the "
                                      "clouds' object stores (state.stores), or state.backend: sqlite",
    }

    def artifact_store(self) -> FilesystemStore:
        storage = self.storage_config()
        root = Path(storage.bucket).expanduser()
        if not root.is_absolute() and self.base_dir is not None:
            root = self.base_dir / root
        return FilesystemStore(self.cloud, root)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class FilesystemStore(ArtifactStore):
    def __init__(self, cloud: str, root: Path) -> None:
        self.cloud = cloud
        self.root = root.resolve()
        self.endpoint = f"file://{self.root}"

    def __repr__(self) -> str:
        return f"FilesystemStore({self.cloud!r}, {str(self.root)!r})"

    def uri(self, key: str) -> str:
        return f"file://{self.root}/{key}"

    def _path(self, key: str, *, meta: bool = False) -> Path:
        self.check_key(key)
        path = (self.root / _META / (key + ".json")) if meta else (self.root / key)
        if not path.resolve().is_relative_to(self.root):  # a symlink inside the store pointing out
            raise IntegrityError(f"{self.cloud}: {key} resolves outside the store {self.root}",
                                 hint="remove the symlink from the store directory")
        return path

    def _fail(self, exc: OSError, during: str, key: str) -> MCOError:
        where = f"{self.cloud}: {during} {self.uri(key)}"
        if isinstance(exc, FileNotFoundError):
            return NotFound(f"{where} failed: not found", cloud=self.cloud)
        if isinstance(exc, PermissionError):
            return ProviderError(f"{where} failed: permission denied", cloud=self.cloud,
                                 hint=f"check the permissions of {self.root}")
        return Unreachable(f"{where} failed: {exc.strerror or exc}", cloud=self.cloud)

    def _write_atomic(self, dest: Path, write: Any) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _record(self, key: str, sha256: str, size: int) -> None:
        mtime = self._path(key).stat().st_mtime_ns
        body = json.dumps({"sha256": sha256, "size": size, "mtime_ns": mtime}).encode()
        self._write_atomic(self._path(key, meta=True), lambda fh: fh.write(body))

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = path.stat()
            size = st.st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._fail(exc, "reading", key) from exc
        try:
            meta = json.loads(self._path(key, meta=True).read_text())
        except (OSError, ValueError):
            meta = {}
        if meta.get("size") != size or meta.get("mtime_ns") != st.st_mtime_ns:
            meta = {}  # the file changed behind our back: its recorded digests mean nothing
        return ObjectInfo(key=key, size=size, sha256=meta.get("sha256"))

    def _verify(self, key: str, sha256: str, size: int) -> None:
        path = self._path(key)
        got = _sha256_file(path)
        if got != sha256 or path.stat().st_size != size:
            self.delete(key)
            raise IntegrityError(f"{self.cloud}: {self.uri(key)} reads back with sha256 {got[:12]}…, not {sha256[:12]}…; "
                                 "the copy was corrupted and was deleted", hint="check the disk, then push again")

    def put_file(self, key: str, path: Path, *, sha256: str, size: int, digests: DigestSource,
                 progress: Progress | None = None) -> UploadResult:
        dest = self._path(key)

        def copy(out: Any) -> None:
            with open(path, "rb") as src:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                    if progress is not None:
                        progress(len(chunk))

        try:
            self._write_atomic(dest, copy)
            local = digests().sha256
            self._verify(key, local, size)
            self._record(key, sha256, size)
        except OSError as exc:
            raise self._fail(exc, "writing", key) from exc
        return UploadResult(key=key, size=size, verified="local:sha256-readback")

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/json") -> UploadResult:
        digest = hashlib.sha256(data).hexdigest()
        try:
            self._write_atomic(self._path(key), lambda fh: fh.write(data))
            self._verify(key, digest, len(data))
            self._record(key, digest, len(data))
        except OSError as exc:
            raise self._fail(exc, "writing", key) from exc
        return UploadResult(key=key, size=len(data), verified="local:sha256-readback")

    def get_file(self, key: str, dest: Path, *, progress: Progress | None = None) -> int:
        src = self._path(key)
        try:
            with open(src, "rb") as fin, open(dest, "wb") as fout:
                while chunk := fin.read(_CHUNK):
                    fout.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
        except OSError as exc:
            raise self._fail(exc, "reading", key) from exc
        return dest.stat().st_size

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise self._fail(exc, "reading", key) from exc

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
        self._path(key, meta=True).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        if not self.root.is_dir():
            return []
        out = []
        for dirpath, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if d != _META]
            for name in files:
                if name.endswith(".partial"):
                    continue
                rel = (Path(dirpath) / name).relative_to(self.root).as_posix()
                if rel.startswith(prefix):
                    out.append(rel)
        return sorted(out)

    def ensure_bucket(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._fail(exc, "creating", "") from exc

