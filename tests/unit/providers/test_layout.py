"""Key names stay inside their prefix; references and digests parse strictly."""

from __future__ import annotations

import hashlib

import pytest

from orchestrator.artifacts.layout import BundleLayout, check_relative_key, parse_digest, parse_ref
from orchestrator.errors import ConfigError, IntegrityError
from orchestrator.providers.base import PART_SIZE, FileDigests

DIGEST = "ab" * 32


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", "a\\..\\b", "", "x/..", "a\0b"])
def test_escaping_keys_are_refused(key: str) -> None:
    with pytest.raises(IntegrityError, match="could escape"):
        check_relative_key(key)


@pytest.mark.parametrize("key", ["model.onnx", "plots/roc.png", "a/b/c.json", "..hidden", "x..y"])
def test_plain_relative_keys_pass(key: str) -> None:
    assert check_relative_key(key) == key


def test_layout_builds_content_addressed_keys() -> None:
    layout = BundleLayout("team/mco")
    assert layout.file_key("digits", DIGEST, "plots/a.png") == f"team/mco/models/digits/{DIGEST}/plots/a.png"
    assert layout.manifest_key("digits", f"sha256:{DIGEST}") == f"team/mco/models/digits/{DIGEST}/manifest.json"
    assert layout.index_key("digits") == "team/mco/models/digits/index.json"
    assert layout.digest_key(DIGEST) == f"team/mco/digests/{DIGEST}.json"
    assert BundleLayout("").file_key("m", DIGEST, "a") == f"models/m/{DIGEST}/a"


def test_layout_refuses_escaping_file_names_and_the_reserved_manifest_name() -> None:
    layout = BundleLayout("mco")
    with pytest.raises(IntegrityError, match=r"'../../etc/x'"):
        layout.file_key("digits", DIGEST, "../../etc/x")
    with pytest.raises(IntegrityError, match="reserved"):
        layout.file_key("digits", DIGEST, "manifest.json")
    with pytest.raises(ConfigError, match="not a valid model name"):
        layout.file_key("../digits", DIGEST, "a")


def test_refs_and_digests() -> None:
    assert parse_ref(f"digits@sha256:{DIGEST}") == ("digits", DIGEST)
    assert parse_ref(f"digits@{DIGEST.upper()}") == ("digits", DIGEST)
    assert parse_ref(DIGEST) == (None, DIGEST)
    for bad in ("digits@sha256:abc", "digits@latest", "sha256:" + "g" * 64):
        with pytest.raises(ConfigError, match="not a bundle digest"):
            parse_ref(bad)
    with pytest.raises(ConfigError):
        parse_digest("")


def test_s3_crc32_prediction_whole_and_composite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import base64
    import zlib

    from orchestrator.artifacts.digests import file_digests
    from orchestrator.providers.base import DigestKind

    def b64(v: int) -> str:
        return base64.b64encode(v.to_bytes(4, "big")).decode()

    data = bytes(range(256)) * (PART_SIZE // 256) * 2 + b"tail"
    parts = [data[i:i + PART_SIZE] for i in range(0, len(data), PART_SIZE)]
    composite = b64(zlib.crc32(b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts)))
    (tmp_path / "big").write_bytes(data)
    big = file_digests(tmp_path / "big", frozenset({DigestKind.CRC32}))
    assert big.s3_crc32(composite=True) == composite
    assert big.sha256 == hashlib.sha256(data).hexdigest() and len(big.crc32_parts) == 3
    (tmp_path / "small").write_bytes(b"abc")
    small = file_digests(tmp_path / "small", frozenset({DigestKind.CRC32}))
    assert small.s3_crc32(composite=True) == b64(zlib.crc32(b"abc"))  # one part: the object's own CRC
    with pytest.raises(ValueError):
        FileDigests(size=1, sha256="").s3_crc32(composite=False)


def test_crc32c_is_reported_as_gcs_does(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import base64

    import google_crc32c

    from orchestrator.artifacts.digests import file_digests
    from orchestrator.providers.base import DigestKind

    (tmp_path / "f").write_bytes(b"hello world" * 1000)
    got = file_digests(tmp_path / "f", frozenset({DigestKind.CRC32C}))
    assert got.crc32c == base64.b64encode(google_crc32c.Checksum(b"hello world" * 1000).digest()).decode()
    assert got.crc32 is None and got.crc32_parts == ()  # not asked for, not computed
