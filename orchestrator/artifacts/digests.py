"""Hash a bundle's files once per push, whatever the number of clouds, off the upload path.

Stores verify an upload by comparing the checksum the cloud computed with ours (only the
kinds some target needs are computed: crc32 for S3, crc32c for GCS); hashing runs
in a small thread pool (hashlib releases the GIL) while the first bytes are already on the
wire, so verification costs little wall time.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from orchestrator.providers.base import PART_SIZE, DigestKind, DigestSource, FileDigests

__all__ = ["DigestCache", "file_digests"]


def file_digests(path: Path, kinds: frozenset[DigestKind] = frozenset(), *, part_size: int = PART_SIZE) -> FileDigests:
    """sha256, plus the asked-for ``kinds`` (crc32 whole and per part, crc32c, md5), of ``path`` in one read."""
    sha = hashlib.sha256()
    want_crc32 = DigestKind.CRC32 in kinds
    crc = None
    if DigestKind.CRC32C in kinds:
        import google_crc32c  # comes with google-cloud-storage, the only store that asks for it

        crc = google_crc32c.Checksum()
    md5 = hashlib.md5() if DigestKind.MD5 in kinds else None
    parts: list[int] = []
    size = 0
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(part_size):
            size += len(chunk)
            sha.update(chunk)
            if want_crc32:  # per part only; the whole-file CRC is needed (and equal to it) for one part
                parts.append(zlib.crc32(chunk))
            if crc is not None:
                crc.update(chunk)
            if md5 is not None:
                md5.update(chunk)
    whole = (parts[0] if parts else 0) if want_crc32 and len(parts) <= 1 else None
    return FileDigests(size=size, sha256=sha.hexdigest(), crc32=whole,
                       crc32_parts=tuple(parts), crc32c=base64.b64encode(crc.digest()).decode() if crc else None,
                       md5=md5.hexdigest() if md5 is not None else None)


class DigestCache:
    """``source(path)`` starts hashing ``path`` (once) and returns a function that waits for it.

    ``kinds`` says, per path, which digests beyond sha256 to compute (what the push's
    target stores will compare); paths not listed get sha256 only.
    """

    def __init__(self, kinds: dict[Path, frozenset[DigestKind]] | None = None, *, workers: int = 2) -> None:
        self.kinds = kinds or {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mco-hash")
        self._futures: dict[Path, Future[FileDigests]] = {}
        self._lock = threading.Lock()

    def source(self, path: Path) -> DigestSource:
        with self._lock:
            fut = self._futures.get(path)
            if fut is None:
                fut = self._futures[path] = self._pool.submit(file_digests, path, self.kinds.get(path, frozenset()))
        return fut.result

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> DigestCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
