"""Each store's upload check against the real emulators: the bytes that reach the cloud must be
the bytes mco hashed. A file changed between the hashing and the upload is refused, and the
object it left is deleted; an unchanged file goes up in parts and reads back whole."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from orchestrator.artifacts.digests import file_digests
from orchestrator.artifacts.push import storage_providers
from orchestrator.errors import IntegrityError
from orchestrator.providers.base import PART_SIZE
from tests.integration.storage.conftest import ALL_CLOUDS, Emulators

MiB = 1024 * 1024


def _store(emulators: Emulators, cloud: str):  # type: ignore[no-untyped-def]
    return storage_providers(emulators.config(), [cloud])[cloud].artifact_store()


@pytest.mark.parametrize(("cloud", "size"), [(c, MiB) for c in ALL_CLOUDS] + [("aws", 2 * PART_SIZE + 5)])
def test_a_file_changed_after_hashing_is_refused_and_deleted(cloud: str, size: int, emulators: Emulators,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(size))
    provider = storage_providers(emulators.config(), [cloud])[cloud]
    hashed = file_digests(path, provider.upload_digests_for(size))
    with open(path, "r+b") as fh:  # one byte in the last part changes after the hashing
        fh.seek(size - 3)
        fh.write(bytes([fh.read(1)[0] ^ 0xFF]))
    key = f"checks/{cloud}-{size}/weights.bin"
    with provider.artifact_store() as store:
        with pytest.raises(IntegrityError, match=r"changed while it was being uploaded|upload was corrupted"):
            store.put_file(key, path, sha256=hashed.sha256, size=size, digests=lambda: hashed)
        assert store.stat(key) is None


@pytest.mark.parametrize("cloud", ALL_CLOUDS)
def test_a_large_file_goes_up_in_parts_and_reads_back_whole(cloud: str, emulators: Emulators,
                                                            tmp_path: Path) -> None:
    size = 3 * PART_SIZE + 7  # several S3 parts; resumable on GCS
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(size))
    seen: list[int] = []
    with _store(emulators, cloud) as store:
        digests = file_digests(path, storage_providers(emulators.config(), [cloud])[cloud].upload_digests_for(size))
        key = f"checks/{cloud}-parts/big.bin"
        result = store.put_file(key, path, sha256=digests.sha256, size=size, digests=lambda: digests,
                                progress=seen.append)
        assert result.size == size and result.verified.startswith(("s3:", "gcs:", "azure:"))
        assert sum(seen) == size  # progress reports every byte once
        info = store.stat(key)
        assert info is not None and info.size == size and info.sha256 == digests.sha256
        store.get_file(key, tmp_path / "back.bin")
        assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == digests.sha256
        store.delete(key)
