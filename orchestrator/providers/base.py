"""The provider interfaces: what mco needs from a cloud, one small interface per concern.

    Capability            what a cloud (or its emulator) may be unable to do
    Provider              a light, stateless description of one configured cloud:
                          name, pip extra, ``unsupported: {Capability: reason}``, and
                          factories for the concern interfaces below
    ArtifactStore         an object store (S3, GCS, Azure Blob, a directory): a handful of
                          primitives; bundle push/pull (orchestrator/artifacts/) builds on them
    ConditionalStore      the same bucket seen as versioned objects written only under a
                          precondition (create-if-absent, replace-if-version-matches): what
                          the replicated release state (orchestrator/releases/state/) needs

Other concerns (container registry, cluster target, price book) add their own small
interface here and one factory method on ``Provider``; a cloud that cannot do one lists
the capability in ``unsupported`` with the reason.

Every method that talks to a cloud raises only ``orchestrator.errors.ProviderError`` and
its subclasses (``AccessDenied``, ``NotFound``, ``Throttled``, ``Unreachable``) or
``IntegrityError``: SDK errors are translated inside the provider module, with the SDK
error kept as ``__cause__``. Cloud SDKs are imported only inside provider modules, and
only when a store is opened, so describing a cloud costs nothing.
"""

from __future__ import annotations

import base64
import enum
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from orchestrator.config import CloudConfig, StorageConfig
from orchestrator.errors import AccessDenied, CapabilityError, ConfigError, IntegrityError, MCOError, PreconditionFailed
from orchestrator.names import unsafe_name_reason

if TYPE_CHECKING:
    from orchestrator.config import RegistryConfig
    from orchestrator.providers.registry import ContainerRegistry, RegistryCredentials

__all__ = [
    "PART_SIZE",
    "ArtifactStore",
    "Capability",
    "ConditionalStore",
    "DigestKind",
    "DigestSource",
    "FileDigests",
    "Listed",
    "ObjectInfo",
    "Progress",
    "Provider",
    "UploadResult",
    "Versioned",
    "check_relative_key",
    "crc32_b64",
]

# Called with the number of bytes just transferred (may be called from SDK worker threads).
Progress = Callable[[int], None]

# Part/chunk size for multipart uploads (boto3's default too). S3 stores must use it: the
# composite checksum mco predicts from ``FileDigests.crc32_parts`` depends on it.
PART_SIZE = 8 * 1024 * 1024


class DigestKind(str, enum.Enum):
    """Local digests a store's upload verification needs, beyond the sha256 every push computes."""

    CRC32 = "crc32"     # S3: compared with the object's (full or composite) CRC32
    CRC32C = "crc32c"   # GCS: compared with the object's crc32c
    MD5 = "md5"         # Azure: compared with the Content-MD5 the service computed for a Put Blob


def crc32_b64(value: int) -> str:
    """A CRC32 as S3 writes it in ``x-amz-checksum-crc32``: base64 of the big-endian 4 bytes."""
    return base64.b64encode(value.to_bytes(4, "big")).decode()


@dataclass(frozen=True)
class FileDigests:
    """Digests of one local file, computed by mco in one read (see orchestrator/artifacts/digests.py).

    Checksums are cheap CRCs on purpose: hashing competes with the upload for the CPU.
    """

    size: int
    sha256: str                            # hex
    crc32: int | None = None               # whole file, if asked for and the file is one part
    crc32_parts: tuple[int, ...] = ()      # each PART_SIZE chunk, if asked for
    crc32c: str | None = None              # base64 of the big-endian CRC32C, as GCS reports it, if asked for
    md5: str | None = None                 # hex, whole file, if asked for

    def s3_crc32(self, *, composite: bool) -> str:
        """The ChecksumCRC32 S3 reports: of the whole object, or (multipart, composite) the
        CRC32 of the concatenated part CRC32s."""
        if len(self.crc32_parts) <= 1:
            if self.crc32 is None:
                raise ValueError("the crc32 digests were not computed for this file")
            return crc32_b64(self.crc32)
        if not composite:
            raise ValueError("a whole-object CRC32 of a multipart file is not computed; S3 reports composite "
                             "checksums for uploads that name ChecksumAlgorithm")
        return crc32_b64(zlib.crc32(b"".join(p.to_bytes(4, "big") for p in self.crc32_parts)))


# Blocks until the digests are ready: stores upload first and verify after, so hashing the
# file (in another thread) overlaps the network transfer instead of delaying it.
DigestSource = Callable[[], FileDigests]


def check_relative_key(key: str, *, what: str = "object name") -> str:
    """``key`` if it is a plain relative path; otherwise ``IntegrityError`` naming the problem."""
    bad = unsafe_name_reason(key)
    if bad:
        raise IntegrityError(f"refusing {what} '{key}': it {bad}, so it could escape its directory",
                             hint="bundle file names must be plain relative paths inside the bundle")
    return key



class Capability(str, enum.Enum):
    """Things a cloud or an emulator may be unable to do. Add members for new concerns."""

    OBJECT_STORE = "object-store"
    # The service checks the checksum we send (Content-MD5, x-amz-checksum-*, crc32c) and
    # rejects a corrupted upload itself, instead of mco comparing after the fact.
    SERVER_VERIFIED_UPLOAD = "server-verified-upload"
    # Large objects go up in parts or resumable chunks, so a failure resends one part.
    MULTIPART_UPLOAD = "multipart-upload"
    # Writes with a precondition the service enforces: create only if absent, replace or delete
    # only if the version read is still current (S3 If-None-Match/If-Match, GCS
    # ifGenerationMatch, Azure If-None-Match/If-Match on the ETag). The release state needs it.
    CONDITIONAL_WRITE = "conditional-write"


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object. ``sha256`` is the digest mco recorded in its metadata."""

    key: str
    size: int
    sha256: str | None = None
    md5: str | None = None          # hex, when the service reports one for the whole object
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UploadResult:
    """One finished upload. ``verified`` names how: e.g. ``s3:etag-md5``, ``gcs:crc32c``."""

    key: str
    size: int
    verified: str


class ArtifactStore(ABC):
    """An object store holding keys under one bucket/container (or directory).

    Keys are POSIX-style relative names; the caller (orchestrator/artifacts/layout.py)
    builds and validates them, and every store checks again with ``check_key``.
    """

    cloud: str          # the configured cloud name, e.g. "aws"
    endpoint: str       # where requests go, for messages (never with credentials)

    @abstractmethod
    def uri(self, key: str) -> str:
        """A URI for people and logs: ``s3://bucket/key``, ``gs://…``, ``az://…``, ``file://…``."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """The object's size and recorded digests, or None if it does not exist."""

    @abstractmethod
    def put_file(self, key: str, path: Path, *, sha256: str, size: int, digests: DigestSource,
                 progress: Progress | None = None) -> UploadResult:
        """Upload ``path`` (multipart/resumable when large) and verify it with the cloud's checksum.

        ``sha256`` (the digest the bundle card records) is stored as object metadata: it is
        what idempotence compares. The store verifies the transfer the cloud's own way:
        the service checks a per-request checksum, and/or the store compares the checksum
        the cloud computed with ``digests()`` (mco's, from the same bytes; only the kinds in
        ``Provider.upload_digests`` are filled in). A mismatch raises ``IntegrityError``
        after deleting the bad object.
        """

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/json") -> UploadResult:
        """Upload a small object in one request (manifests, indexes), verified like ``put_file``."""

    @abstractmethod
    def get_file(self, key: str, dest: Path, *, progress: Progress | None = None) -> int:
        """Download to ``dest``; return the byte count. ``NotFound`` if the object is missing."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read a small object. ``NotFound`` if it is missing."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object; no error if it does not exist."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys that start with ``prefix``."""

    def list_info(self, prefix: str) -> dict[str, ObjectInfo]:
        """Objects under ``prefix`` with sizes and recorded digests. Stores whose listing carries
        metadata override this to make it one request; the default lists, then stats each."""
        found = {}
        for key in self.list(prefix):
            info = self.stat(key)
            if info is not None:
                found[key] = info
        return found

    @abstractmethod
    def ensure_bucket(self) -> None:
        """Create the bucket/container if missing (local stand-ins and tests; push never calls it)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> ArtifactStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def check_key(key: str) -> str:
        """Refuse keys that could land outside the store's prefix (``..``, absolute, backslashes)."""
        return check_relative_key(key)


@dataclass(frozen=True)
class Versioned:
    """An object's bytes and the version a conditional write must name (ETag, generation)."""

    data: bytes
    version: str


@dataclass(frozen=True)
class Listed:
    """One object in a listing: its version, and the MD5 (hex) of its bytes when the listing says."""

    version: str
    md5: str | None = None


class ConditionalStore(ABC):
    """Small objects under one bucket, changed only under a precondition the service enforces.

    ``version`` is opaque: an ETag (S3, Azure) or a generation (GCS). A lost precondition
    raises ``PreconditionFailed``, translated at the provider boundary from the service's
    status, never from message text. Everything else raises the usual ``ProviderError``s.
    """

    cloud: str
    endpoint: str

    @abstractmethod
    def read(self, key: str) -> Versioned | None:
        """The object and its version, or None if it does not exist."""

    @abstractmethod
    def create(self, key: str, data: bytes) -> str:
        """Write ``key`` only if it does not exist; return the new version."""

    @abstractmethod
    def replace(self, key: str, data: bytes, *, version: str) -> str:
        """Overwrite ``key`` only if its current version is ``version``; return the new version."""

    @abstractmethod
    def delete_if(self, key: str, *, version: str) -> None:
        """Delete ``key`` only if its current version is ``version`` (no error if it is gone)."""

    @abstractmethod
    def versions(self, prefix: str) -> dict[str, str]:
        """``{key: version}`` of every object under ``prefix``, in one listing."""

    def listing(self, prefix: str) -> dict[str, Listed]:
        """Like ``versions``, with each object's MD5 where the listing carries one, so a reader
        fetches identical copies on several stores once. Stores whose listing has it override this."""
        return {k: Listed(v) for k, v in self.versions(prefix).items()}

    @abstractmethod
    def where(self) -> str:
        """The bucket and cloud, for messages: ``s3://bucket (aws)``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    # -- errors, for the cloud stores: each also is an ArtifactStore (uri, _translate) and names
    # its SDK's precondition failure and the permissions the state needs in its own module.
    if TYPE_CHECKING:
        def uri(self, key: str) -> str: ...
        def _translate(self, exc: BaseException, during: str, key: str) -> MCOError: ...

    def _precondition_detail(self, exc: BaseException) -> str | None:
        """What the service said (a status, an error code) if ``exc`` is its refusal of a
        precondition, else None. Judged from the status, never from message text."""
        raise NotImplementedError

    def _access_hint(self) -> str:
        """The permissions on the bucket the release state needs, for an AccessDenied's hint."""
        raise NotImplementedError

    def _conditional(self, exc: BaseException, during: str, key: str) -> MCOError:
        """``exc`` as mco's error: PreconditionFailed when the service refused the precondition,
        else the store's usual translation (with the state's permissions in AccessDenied's hint)."""
        detail = self._precondition_detail(exc)
        if detail is not None:
            return PreconditionFailed(f"{self.cloud}: {during} {self.uri(key)}: precondition failed ({detail})",
                                      cloud=self.cloud)
        err = self._translate(exc, during, key)
        if isinstance(err, AccessDenied):
            err.hint = self._access_hint()
        return err


class Provider(ABC):
    """One configured cloud: a light, stateless description plus factories for its interfaces.

    Fixed facts are class constants a provider overrides: everything mco knows about a
    cloud is declared in its module (config validation, the image's fetch SDKs, the
    manifest overlay, registry logins and price keys all ask the provider class).
    ``unsupported`` maps each capability this cloud lacks to the reason; emulator gaps
    (which depend on the endpoint) come from ``emulator_gaps``.
    """

    name: ClassVar[str]                 # aws | gcp | azure | local: ``provider:`` in mco.yaml
    display_name: ClassVar[str]
    extra: ClassVar[str | None] = None  # pip extra holding the SDK, e.g. "aws"; also what a fetch-mode image installs
    sdk_package: ClassVar[str | None] = None
    overlay: ClassVar[str]              # manifests/overlays/<overlay> for this cloud's clusters
    pricing_prefix: ClassVar[str | None] = None  # price catalog keys are "<prefix>/<region>"
    default_region: ClassVar[str | None] = None  # also the region the local stand-in is priced as
    # The ``registry.auth`` value that logs in with this cloud's identity (``registry_credentials``).
    registry_auth: ClassVar[str | None] = None
    registry_auth_hint: ClassVar[str] = ""       # what to check when the registry refuses that login
    color: ClassVar[str | None] = None           # for plots that compare clouds
    unsupported: ClassVar[Mapping[Capability, str]] = {}
    # What this cloud's artifact store needs from ``FileDigests`` to verify an upload, so a
    # push hashes only what some target will compare.
    upload_digests: ClassVar[frozenset[DigestKind]] = frozenset()
    # Where a pod's workload identity gets its credentials, as (CIDR, TCP port): a fetch-mode
    # pod without a credentials Secret needs egress there beside the store's port.
    identity_egress: ClassVar[tuple[tuple[str, int], ...]] = ()

    def __init__(self, cloud: str, config: CloudConfig, *, base_dir: Path | None = None) -> None:
        self.cloud = cloud
        self.config = config
        self.base_dir = base_dir   # resolves relative paths in the config (the config file's directory)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cloud!r})"

    @classmethod
    def pricing_key(cls, region: str | None = None) -> str | None:
        """The price catalog key for ``region`` (default: ``default_region``), or None when unpriced."""
        region = region or cls.default_region
        if cls.pricing_prefix is None or region is None:
            return None
        return f"{cls.pricing_prefix}/{region}"

    @classmethod
    def registry_credentials(cls, cloud: str, cfg: RegistryConfig, base_dir: Path | None) -> RegistryCredentials:
        """Log in to this cloud's registry with its identity (``registry.auth: <registry_auth>``)."""
        raise ConfigError(f"{cloud}: {cls.display_name} has no registry login of its own",
                          hint="use registry.auth: basic or none")

    def storage_config(self) -> StorageConfig:
        if self.config.storage is None:
            raise ConfigError(f"cloud '{self.cloud}' has no storage section",
                              hint=f"add clouds.{self.cloud}.storage: {{bucket: NAME}} to the config")
        return self.config.storage

    def upload_digests_for(self, size: int) -> frozenset[DigestKind]:
        """``upload_digests`` for a file of ``size`` bytes (a store may verify large files differently)."""
        return self.upload_digests

    def emulator_gaps(self) -> Mapping[Capability, str]:
        """Capabilities the configured endpoint (an emulator, say) lacks beyond ``unsupported``."""
        return {}

    def gaps(self) -> dict[Capability, str]:
        return {**self.unsupported, **self.emulator_gaps()}

    def supports(self, capability: Capability) -> bool:
        return capability not in self.gaps()

    def check(self, *needed: Capability) -> None:
        """Raise one ``CapabilityError`` listing every needed capability this cloud lacks, and why."""
        gaps = self.gaps()
        missing = [f"{c.value}: {gaps[c]}" for c in needed if c in gaps]
        if missing:
            raise CapabilityError(f"{self.cloud} ({self.display_name}) cannot do what was asked:\n  "
                                  + "\n  ".join(missing))

    @abstractmethod
    def artifact_store(self) -> ArtifactStore:
        """The object store for this cloud's ``storage`` section. Imports the SDK."""

    def conditional_store(self) -> ConditionalStore:
        """This cloud's bucket as a ``ConditionalStore`` (the release state). Imports the SDK."""
        self.check(Capability.CONDITIONAL_WRITE)
        raise CapabilityError(f"{self.cloud} ({self.display_name}) has no conditional store")

    def container_registry(self) -> ContainerRegistry:
        """The registry for this cloud's ``registry`` section (providers/registry.py; auth per ``registry.auth``)."""
        from orchestrator.providers.registry import registry_for

        if self.config.registry is None:
            raise ConfigError(f"cloud '{self.cloud}' has no registry section",
                              hint=f"add clouds.{self.cloud}.registry: {{url: HOST}}, or run `mco local up registries`")
        return registry_for(self.cloud, self.config.registry, base_dir=self.base_dir)
