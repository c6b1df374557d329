"""Where a bundle lives in an object store, and the names that may appear there.

    <prefix>/models/<name>/index.json                     versions of one model (newest last)
    <prefix>/models/<name>/<digest>/<file>                 every bundle file, card.json included
    <prefix>/models/<name>/<digest>/manifest.json          written last: the bundle is visible
    <prefix>/digests/<digest>.json                         {"name": ...}: find a bundle by digest alone

Keys are built only from validated parts: a model name, a 64-hex digest and relative file
names with no ``.``/``..``/empty segment, no backslash and no leading ``/``. The same check
guards the other direction: ``pull`` refuses a manifest naming a file outside its directory.
"""

from __future__ import annotations

import re

from orchestrator.errors import ConfigError, IntegrityError
from orchestrator.providers.base import check_relative_key

__all__ = [
    "MANIFEST_FILE",
    "MANIFEST_SCHEMA",
    "BundleLayout",
    "check_name",
    "check_relative_key",
    "parse_digest",
    "parse_ref",
]

MANIFEST_FILE = "manifest.json"
MANIFEST_SCHEMA = "mco.bundle-manifest/v1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise ConfigError(f"'{name}' is not a valid model name",
                          hint="use letters, digits, '.', '_' and '-' (at most 128), starting with a letter or digit")
    return name


def parse_digest(text: str) -> str:
    """``sha256:<hex>`` or ``<hex>`` -> ``<hex>`` (64 lowercase hex digits)."""
    value = text.strip().removeprefix("sha256:").lower()
    if not _DIGEST.match(value):
        raise ConfigError(f"'{text}' is not a bundle digest",
                          hint="use the 64-hex bundle digest, e.g. from `mco push --output json` (bundle_digest)")
    return value


def parse_ref(ref: str) -> tuple[str | None, str]:
    """``NAME@DIGEST`` (or a bare ``DIGEST``) -> (name or None, hex digest)."""
    name, sep, digest = ref.rpartition("@")
    if not sep:
        return None, parse_digest(ref)
    return check_name(name), parse_digest(digest)


class BundleLayout:
    """Key names under one store prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_relative_key(self.prefix, what="prefix")

    def _key(self, *parts: str) -> str:
        rel = "/".join(parts)
        check_relative_key(rel)
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def bundle_dir(self, name: str, digest: str) -> str:
        return self._key("models", check_name(name), parse_digest(digest))

    def file_key(self, name: str, digest: str, rel: str) -> str:
        check_relative_key(rel, what="bundle file name")
        if rel == MANIFEST_FILE:
            raise IntegrityError(f"a bundle file may not be called '{MANIFEST_FILE}'",
                                 hint="rename that file in the bundle; the name is reserved for the manifest")
        return self._key("models", check_name(name), parse_digest(digest), rel)

    def manifest_key(self, name: str, digest: str) -> str:
        return self._key("models", check_name(name), parse_digest(digest), MANIFEST_FILE)

    def index_key(self, name: str) -> str:
        return self._key("models", check_name(name), "index.json")

    def digest_key(self, digest: str) -> str:
        return self._key("digests", parse_digest(digest) + ".json")
