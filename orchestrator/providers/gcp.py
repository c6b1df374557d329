"""GCP: Cloud Storage as the artifact store (google-cloud-storage, imported only when a store is opened).

Uploads above 8 MiB are resumable (chunked, each chunk retried with backoff); smaller ones
are one multipart request. The library computes a crc32c while sending and compares it with
the one GCS reports (``DataCorruption`` on a mismatch), and mco compares the object's
crc32c (from the upload response) with its own, computed from the file while it uploads.
Downloads are checked by the library against the object's md5Hash.

With ``credentials: emulator`` (a loopback endpoint) the client is anonymous, as GCS
emulators (fake-gcs-server, gcp-storage-emulator) expect; otherwise Application Default
Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud, metadata server) are used.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from orchestrator.errors import (
    AccessDenied,
    IntegrityError,
    MCOError,
    MissingExtraError,
    NotFound,
    PreconditionFailed,
    ProviderError,
    Throttled,
    Unreachable,
)
from orchestrator.extras import require_extra
from orchestrator.providers._io import ProgressReader, ProgressWriter
from orchestrator.providers.base import (
    ArtifactStore,
    Capability,
    ConditionalStore,
    DigestKind,
    DigestSource,
    Listed,
    ObjectInfo,
    Progress,
    Provider,
    UploadResult,
    Versioned,
)

if TYPE_CHECKING:
    from orchestrator.config import RegistryConfig
    from orchestrator.providers.registry import RegistryCredentials

__all__ = ["GcpProvider", "GcsConditionalStore", "GcsStore"]

EMULATOR_PROJECT = "mco-local"
# Give up on an unreachable endpoint after this long (the library's default is 120 s).
RETRY_TIMEOUT_S = 10.0


def _b64_to_hex(value: str | None) -> str | None:
    return base64.b64decode(value).hex() if value else None


class GcpProvider(Provider):
    name = "gcp"
    display_name = "Google Cloud Platform"
    extra = "gcp"
    sdk_package = "google-cloud-storage"
    overlay = "gcp"
    pricing_prefix = "gcp"
    default_region = "us-central1"
    registry_auth = "gcp"
    registry_auth_hint = "check the Google identity has Artifact Registry Writer on the repository"
    color = "#4285f4"
    unsupported: ClassVar[Mapping[Capability, str]] = {}
    upload_digests = frozenset({DigestKind.CRC32C})
    # GKE's metadata server answers workload identity's token requests; with Dataplane V2 it
    # listens on 169.254.169.252:988 as well.
    identity_egress = (("169.254.169.254/32", 80), ("169.254.169.252/32", 988))

    @classmethod
    def registry_credentials(cls, cloud: str, cfg: RegistryConfig, base_dir: Path | None) -> RegistryCredentials:
        """An Artifact Registry login: an access token from google-auth's default credentials."""
        try:
            import google.auth
            import google.auth.exceptions
            import google.auth.transport.requests
        except ImportError as exc:
            raise MissingExtraError("google-auth", cls.extra, purpose="Artifact Registry login") from exc
        try:
            creds, _project = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
            creds.refresh(google.auth.transport.requests.Request())
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise AccessDenied(f"{cloud}: no Google credentials for the Artifact Registry login to {cfg.url}",
                               cloud=cloud, hint="set GOOGLE_APPLICATION_CREDENTIALS, or "
                                                 "`gcloud auth application-default login`") from exc
        except google.auth.exceptions.GoogleAuthError as exc:
            raise AccessDenied(f"{cloud}: Google refused an access token: {type(exc).__name__}", cloud=cloud,
                               hint="check the service account and its Artifact Registry Writer role") from exc
        from orchestrator.providers.registry import RegistryCredentials

        return RegistryCredentials("oauth2accesstoken", str(creds.token))

    def artifact_store(self) -> GcsStore:
        return GcsStore(self.cloud, self.storage_config())

    def conditional_store(self) -> GcsConditionalStore:
        return GcsConditionalStore(self.cloud, self.storage_config())


class GcsStore(ArtifactStore):
    def __init__(self, cloud: str, storage: Any, *, retry_timeout_s: float = RETRY_TIMEOUT_S) -> None:
        gcs = require_extra("google.cloud.storage", package="google-cloud-storage", extra="gcp",
                            purpose="Google Cloud Storage")
        from google.cloud.storage.retry import DEFAULT_RETRY

        self.cloud = cloud
        self.storage = storage
        self.endpoint = storage.endpoint or "https://storage.googleapis.com"
        self.retry = DEFAULT_RETRY.with_timeout(retry_timeout_s).with_delay(initial=0.25, maximum=4.0)
        kwargs: dict[str, Any] = {}
        if storage.endpoint:
            kwargs["client_options"] = {"api_endpoint": storage.endpoint}
        try:
            if storage.credentials == "emulator":
                from google.auth.credentials import AnonymousCredentials

                kwargs.update(project=EMULATOR_PROJECT, credentials=AnonymousCredentials())
            if not storage.verify_tls:
                kwargs["_http"] = self._insecure_session(kwargs.get("credentials"))
            self.client = gcs.Client(**kwargs)
        except Exception as exc:
            raise self._translate(exc, "configuring the GCS client for", "") from exc
        self.bucket = self.client.bucket(storage.bucket)

    @staticmethod
    def _insecure_session(credentials: Any) -> Any:
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        if credentials is None:
            credentials, _ = google.auth.default()
        session = AuthorizedSession(credentials)
        session.verify = False  # the user turned TLS verification off for this endpoint
        return session

    def __repr__(self) -> str:
        return f"GcsStore({self.cloud!r}, {self.storage.bucket!r}, {self.endpoint!r})"

    def uri(self, key: str) -> str:
        return f"gs://{self.storage.bucket}/{key}"

    def _translate(self, exc: BaseException, during: str, key: str) -> MCOError:
        import requests
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc
        from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

        where = f"{self.cloud}: {during} {self.uri(key) if key else 'gs://' + self.storage.bucket} at {self.endpoint}"
        if isinstance(exc, gexc.RetryError) and exc.cause is not None:
            exc = exc.cause
        if isinstance(exc, auth_exc.DefaultCredentialsError):
            return AccessDenied(f"{where} failed: no Google credentials found", cloud=self.cloud,
                                hint="set GOOGLE_APPLICATION_CREDENTIALS, or run `gcloud auth application-default login`")
        if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                            auth_exc.TransportError, ConnectionError, TimeoutError)):
            return Unreachable(f"{where} failed: cannot connect ({type(exc).__name__})", cloud=self.cloud,
                               hint=f"is the endpoint up? check clouds.{self.cloud}.storage.endpoint "
                                    "(`mco local status storage` for the local emulators), then push again")
        if isinstance(exc, DataCorruption):
            return IntegrityError(f"{where} failed: the crc32c GCS computed does not match the bytes sent",
                                  hint="the bytes changed in transit or on disk; push again")
        status = None
        if isinstance(exc, gexc.GoogleAPICallError):
            status = exc.code
        elif isinstance(exc, InvalidResponse) and getattr(exc, "response", None) is not None:
            status = getattr(exc.response, "status_code", None)
        text = str(getattr(exc, "message", None) or exc)[:300]
        if status in (401, 403):
            return AccessDenied(f"{where} failed: access denied ({status})", cloud=self.cloud,
                                hint="the identity needs roles/storage.objectAdmin on the bucket")
        if status == 404:
            if "bucket" in text.lower():
                return NotFound(f"{where} failed: the bucket '{self.storage.bucket}' does not exist", cloud=self.cloud,
                                hint=f"create it (the Pulumi stack does), or fix clouds.{self.cloud}.storage.bucket")
            return NotFound(f"{where} failed: not found ({text})", cloud=self.cloud)
        if status in (429, 503):
            return Throttled(f"{where} failed: throttled ({status})", cloud=self.cloud, hint="wait and push again")
        return ProviderError(f"{where} failed: {type(exc).__name__}: {text}", cloud=self.cloud)

    def stat(self, key: str) -> ObjectInfo | None:
        self.check_key(key)
        try:
            blob = self.bucket.get_blob(key, retry=self.retry)
        except Exception as exc:
            err = self._translate(exc, "reading", key)
            if isinstance(err, NotFound) and "bucket" not in err.message:
                return None
            raise err from exc
        if blob is None:
            return None
        meta = dict(blob.metadata or {})
        return ObjectInfo(key=key, size=int(blob.size or 0), sha256=meta.get("sha256"),
                          md5=_b64_to_hex(blob.md5_hash), extra={"crc32c": blob.crc32c or ""})

    def _verify(self, blob: Any, key: str, crc32c: str, size: int) -> None:
        """The upload response carries the object's crc32c as GCS computed it: compare with ours."""
        got = blob.crc32c
        if got is None:
            blob.reload(retry=self.retry)
            got = blob.crc32c
        if got != crc32c or int(blob.size or 0) != size:
            self.delete(key)
            raise IntegrityError(
                f"{self.cloud}: {self.uri(key)} was stored with crc32c {got} ({blob.size} bytes), but the local file "
                f"gives {crc32c} ({size} bytes): the upload was corrupted; the object was deleted",
                hint="push again")

    def put_file(self, key: str, path: Path, *, sha256: str, size: int, digests: DigestSource,
                 progress: Progress | None = None) -> UploadResult:
        self.check_key(key)
        blob = self.bucket.blob(key)
        blob.metadata = {"sha256": sha256}
        try:
            with open(path, "rb") as fh:
                blob.upload_from_file(ProgressReader(fh, progress), size=size, content_type="application/octet-stream",
                                      checksum="crc32c", retry=self.retry)
        except Exception as exc:
            raise self._translate(exc, "uploading", key) from exc
        crc32c = digests().crc32c
        if crc32c is None:
            raise ValueError("GCS verification needs the crc32c digest (Provider.upload_digests)")
        self._verify(blob, key, crc32c, size)
        return UploadResult(key=key, size=size, verified="gcs:crc32c")

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/json") -> UploadResult:
        import hashlib

        import google_crc32c

        self.check_key(key)
        blob = self.bucket.blob(key)
        blob.metadata = {"sha256": hashlib.sha256(data).hexdigest()}
        try:
            blob.upload_from_string(data, content_type=content_type, checksum="crc32c", retry=self.retry)
        except Exception as exc:
            raise self._translate(exc, "uploading", key) from exc
        self._verify(blob, key, base64.b64encode(google_crc32c.Checksum(data).digest()).decode(), len(data))
        return UploadResult(key=key, size=len(data), verified="gcs:crc32c")

    def get_file(self, key: str, dest: Path, *, progress: Progress | None = None) -> int:
        self.check_key(key)
        try:
            with open(dest, "wb") as fh:
                self.bucket.blob(key).download_to_file(ProgressWriter(fh, progress), checksum="md5", retry=self.retry)
        except Exception as exc:
            raise self._translate(exc, "downloading", key) from exc
        return dest.stat().st_size

    def get_bytes(self, key: str) -> bytes:
        self.check_key(key)
        try:
            return bytes(self.bucket.blob(key).download_as_bytes(checksum="md5", retry=self.retry))
        except Exception as exc:
            raise self._translate(exc, "reading", key) from exc

    def delete(self, key: str) -> None:
        self.check_key(key)
        try:
            self.bucket.blob(key).delete(retry=self.retry)
        except Exception as exc:
            err = self._translate(exc, "deleting", key)
            if not isinstance(err, NotFound):
                raise err from exc

    def list(self, prefix: str) -> list[str]:
        try:
            return [b.name for b in self.client.list_blobs(self.storage.bucket, prefix=prefix, retry=self.retry)]
        except Exception as exc:
            raise self._translate(exc, "listing", prefix) from exc

    def list_info(self, prefix: str) -> dict[str, ObjectInfo]:
        try:
            return {b.name: ObjectInfo(key=b.name, size=int(b.size or 0), sha256=(b.metadata or {}).get("sha256"),
                                       md5=_b64_to_hex(b.md5_hash), extra={"crc32c": b.crc32c or ""})
                    for b in self.client.list_blobs(self.storage.bucket, prefix=prefix, retry=self.retry)}
        except Exception as exc:
            raise self._translate(exc, "listing", prefix) from exc

    def ensure_bucket(self) -> None:
        from google.api_core import exceptions as gexc

        try:
            if self.client.lookup_bucket(self.storage.bucket, retry=self.retry) is None:
                self.client.create_bucket(self.storage.bucket, location=self.storage.region)
        except gexc.Conflict:
            return
        except Exception as exc:
            raise self._translate(exc, "creating", "") from exc

    def close(self) -> None:
        http = getattr(self.client, "_http_internal", None)
        if http is not None:
            http.close()


class GcsConditionalStore(GcsStore, ConditionalStore):
    """GCS with preconditions: ``ifGenerationMatch=0`` creates, ``ifGenerationMatch=<generation>``
    replaces and deletes; GCS answers 412 when the generation is not the one named.

    The release state must notice a dead store within a second or two: retries give up sooner
    than for bundle pushes. A conditional request is idempotent, so the library retries it.
    """

    def __init__(self, cloud: str, storage: Any) -> None:
        super().__init__(cloud, storage, retry_timeout_s=0.5)
        # fake-gcs-server ignores ifGenerationMatch on DELETE (tried: v1.56.1 deletes anyway);
        # GCS enforces it. Against the emulator the generation is compared first (a short race
        # window, declared in GcpProvider.emulator_gaps).
        self.checks_delete_itself = storage.credentials != "emulator"

    def where(self) -> str:
        return f"gs://{self.storage.bucket} ({self.cloud})"

    def _precondition_detail(self, exc: BaseException) -> str | None:
        from google.api_core import exceptions as gexc

        # _translate unwraps a RetryError the same way, so both judge the same exception.
        if isinstance(exc, gexc.RetryError) and exc.cause is not None:
            exc = exc.cause
        return "412" if isinstance(exc, gexc.PreconditionFailed) else None

    def _access_hint(self) -> str:
        return (f"the identity needs storage.objects.create, get, delete and list on bucket "
                f"'{self.storage.bucket}' (roles/storage.objectAdmin; the release state lives under its prefix)")

    def read(self, key: str) -> Versioned | None:
        self.check_key(key)
        blob = self.bucket.blob(key)
        try:
            data = blob.download_as_bytes(retry=self.retry)
        except Exception as exc:
            err = self._conditional(exc, "reading", key)
            if isinstance(err, NotFound) and "bucket" not in err.message:
                return None
            raise err from exc
        # The download's response headers carry the generation of exactly the bytes read.
        return Versioned(bytes(data), str(blob.generation))

    def create(self, key: str, data: bytes) -> str:
        self.check_key(key)
        blob = self.bucket.blob(key)
        try:
            blob.upload_from_string(data, content_type="application/json", if_generation_match=0, retry=self.retry)
        except Exception as exc:
            raise self._conditional(exc, "creating", key) from exc
        return str(blob.generation)

    def replace(self, key: str, data: bytes, *, version: str) -> str:
        self.check_key(key)
        blob = self.bucket.blob(key)
        try:
            blob.upload_from_string(data, content_type="application/json", if_generation_match=int(version),
                                    retry=self.retry)
        except Exception as exc:
            raise self._conditional(exc, "replacing", key) from exc
        return str(blob.generation)

    def delete_if(self, key: str, *, version: str) -> None:
        self.check_key(key)
        try:
            if not self.checks_delete_itself:
                current = self.bucket.get_blob(key, retry=self.retry)
                if current is None:
                    return
                if str(current.generation) != version:
                    raise PreconditionFailed(f"{self.cloud}: deleting {self.uri(key)}: precondition failed "
                                             f"(generation {current.generation}, not {version})", cloud=self.cloud)
            self.bucket.blob(key).delete(if_generation_match=int(version), retry=self.retry)
        except PreconditionFailed:
            raise
        except Exception as exc:
            err = self._conditional(exc, "deleting", key)
            if not isinstance(err, NotFound):
                raise err from exc

    def versions(self, prefix: str) -> dict[str, str]:
        try:
            return {b.name: str(b.generation)
                    for b in self.client.list_blobs(self.storage.bucket, prefix=prefix, retry=self.retry)}
        except Exception as exc:
            raise self._conditional(exc, "listing", prefix) from exc

    def listing(self, prefix: str) -> dict[str, Listed]:
        try:
            return {b.name: Listed(str(b.generation), _b64_to_hex(b.md5_hash))
                    for b in self.client.list_blobs(self.storage.bucket, prefix=prefix, retry=self.retry)}
        except Exception as exc:
            raise self._conditional(exc, "listing", prefix) from exc
