"""Azure: Blob Storage as the artifact store (azure-storage-blob, imported only when a store is opened).

Uploads up to 64 MiB are one Put Blob; larger ones are staged 4 MiB blocks sent in
parallel and committed with Put Block List, each request retried with exponential backoff.
A Put Blob's Content-MD5 is computed by the service from what it stored and compared with
mco's md5 of the file (hashed beside the upload, not before it). Each Put Block instead
carries a transactional Content-MD5 (``validate_content``) that the service (Azure and
Azurite alike, checked) recomputes on arrival and refuses on a mismatch. mco's sha256 of
the file is then compared with the card by the push.

Credentials: ``AZURE_STORAGE_CONNECTION_STRING`` if set, else ``DefaultAzureCredential``
against the endpoint ``https://ACCOUNT.blob.core.windows.net``. With ``credentials:
emulator`` (a loopback endpoint) the Azurite development account is used: its name and key
are published in Azurite's documentation, guard nothing, and are never printed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from orchestrator.errors import (
    AccessDenied,
    ConfigError,
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

__all__ = ["AZURITE_ACCOUNT", "AzureBlobStore", "AzureConditionalStore", "AzureProvider"]

CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
# Azurite's fixed development account (public, documented by Microsoft; works only against Azurite).
AZURITE_ACCOUNT = "devstoreaccount1"
_AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
MAX_CONCURRENCY = 8
ACR_TOKEN_USER = "00000000-0000-0000-0000-000000000000"  # ACR's fixed user name for refresh tokens
MAX_SINGLE_PUT = 64 * 1024 * 1024  # the SDK's default max_single_put_size: one Put Blob up to here
_CLIENT_OPTIONS: dict[str, Any] = {"connection_timeout": 5, "read_timeout": 60, "max_single_put_size": MAX_SINGLE_PUT}


def _retry_policy(sdk: Any) -> Any:
    # The storage SDK's default backs off 15 s, 18 s, 24 s per request: with blocks in
    # parallel an unreachable endpoint took ~90 s to report. 0.5 s, 1.5 s, 4.5 s (plus jitter).
    # A refused connection gets one retry (an endpoint that is down stays down for seconds);
    # throttling and 5xx get three.
    return sdk.ExponentialRetry(initial_backoff=0.5, increment_base=3, retry_total=3, retry_connect=1,
                                random_jitter_range=0.5)


class AzureProvider(Provider):
    name = "azure"
    display_name = "Microsoft Azure"
    extra = "azure"
    sdk_package = "azure-storage-blob"
    overlay = "azure"
    pricing_prefix = "azure"
    default_region = "eastus"
    registry_auth = "acr"
    registry_auth_hint = "check the Azure identity has AcrPush on the registry"
    color = "#008ad7"
    unsupported: ClassVar[Mapping[Capability, str]] = {}
    # Managed identity through the instance metadata service. (Workload identity exchanges its
    # projected token with Entra ID on 443, which the store's rule already opens.)
    identity_egress = (("169.254.169.254/32", 80),)

    def upload_digests_for(self, size: int) -> frozenset[DigestKind]:
        # One Put Blob: compared with the MD5 the service computes. Blocks: checked per request.
        return frozenset({DigestKind.MD5}) if size <= MAX_SINGLE_PUT else frozenset()

    @classmethod
    def registry_credentials(cls, cloud: str, cfg: RegistryConfig, base_dir: Path | None) -> RegistryCredentials:
        """An ACR login: the admin user as basic auth when configured, else an azure-identity token
        exchanged for an ACR refresh token."""
        import httpx

        from orchestrator.providers.registry import RegistryCredentials, basic_credentials

        if cfg.password_env or cfg.password_file:  # the admin user (or a token) given as basic auth
            creds = basic_credentials(cloud, cfg, base_dir)
            assert creds is not None
            return creds
        try:
            from azure.core.exceptions import ClientAuthenticationError
            from azure.identity import DefaultAzureCredential
        except ImportError as exc:
            raise MissingExtraError("azure-identity", cls.extra, purpose="ACR login") from exc
        try:
            aad = DefaultAzureCredential().get_token("https://management.azure.com/.default")
        except ClientAuthenticationError as exc:
            raise AccessDenied(f"{cloud}: no Azure identity for the ACR login to {cfg.url}", cloud=cloud,
                               hint="`az login`, or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET; "
                                    "or use the admin user via password_env") from exc
        try:
            resp = httpx.post(f"https://{cfg.url}/oauth2/exchange", timeout=30,
                              data={"grant_type": "access_token", "service": cfg.url, "access_token": aad.token})
        except httpx.HTTPError as exc:
            raise Unreachable(f"{cloud}: cannot reach {cfg.url} to exchange the Azure token: {type(exc).__name__}",
                              cloud=cloud) from exc
        if resp.status_code != 200:
            raise AccessDenied(f"{cloud}: ACR refused the Azure token exchange (HTTP {resp.status_code})", cloud=cloud,
                               hint="the identity needs the AcrPush role on the registry")
        return RegistryCredentials(ACR_TOKEN_USER, str(resp.json()["refresh_token"]))

    def artifact_store(self) -> AzureBlobStore:
        return AzureBlobStore(self.cloud, self.storage_config())

    def conditional_store(self) -> AzureConditionalStore:
        return AzureConditionalStore(self.cloud, self.storage_config())


class AzureBlobStore(ArtifactStore):
    def __init__(self, cloud: str, storage: Any, *, quick: bool = False) -> None:
        sdk = require_extra("azure.storage.blob", package="azure-storage-blob", extra="azure",
                            purpose="Azure Blob Storage")
        self.cloud = cloud
        self.storage = storage
        self.container_name = storage.bucket
        options = dict(_CLIENT_OPTIONS, connection_verify=storage.verify_tls, retry_policy=_retry_policy(sdk))
        if quick:  # the release state: notice a dead endpoint within a second or two
            options.update(connection_timeout=1, read_timeout=10,
                           retry_policy=sdk.ExponentialRetry(initial_backoff=0.2, increment_base=2, retry_total=1,
                                                             retry_connect=0, random_jitter_range=0.2))
        conn = os.environ.get(CONNECTION_STRING_ENV)
        try:
            if storage.credentials == "emulator":
                self.auth_source = "the Azurite development account (credentials: emulator)"
                self.endpoint = str(storage.endpoint)
                service = sdk.BlobServiceClient(account_url=self.endpoint, **options,
                                                credential={"account_name": AZURITE_ACCOUNT, "account_key": _AZURITE_KEY})
            elif conn:
                self.auth_source = f"the account key in {CONNECTION_STRING_ENV}"
                service = sdk.BlobServiceClient.from_connection_string(conn, **options)
                self.endpoint = service.url.rstrip("/")
            elif storage.endpoint:
                try:
                    from azure.identity import DefaultAzureCredential
                except ImportError as exc:
                    raise MissingExtraError("azure-identity", "azure", purpose="Azure sign-in") from exc
                self.auth_source = "DefaultAzureCredential (`az login`, AZURE_CLIENT_ID/AZURE_TENANT_ID/...)"
                self.endpoint = storage.endpoint
                service = sdk.BlobServiceClient(account_url=self.endpoint, credential=DefaultAzureCredential(), **options)
            else:
                raise ConfigError(f"cloud '{cloud}': Azure Blob needs an account",
                                  hint=f"set {CONNECTION_STRING_ENV}, or clouds.{cloud}.storage.endpoint: "
                                       "https://ACCOUNT.blob.core.windows.net (signed in with DefaultAzureCredential)")
        except MCOError:
            raise
        except ValueError:  # a malformed connection string; never echo it (it holds the key)
            raise ConfigError(f"cloud '{cloud}': {CONNECTION_STRING_ENV} is not a valid connection string",
                              hint="copy it again from the portal (Access keys) or `az storage account "
                                   "show-connection-string`") from None
        self.service = service
        self.container = service.get_container_client(self.container_name)

    def __repr__(self) -> str:
        return f"AzureBlobStore({self.cloud!r}, {self.container_name!r}, {self.endpoint!r})"

    def uri(self, key: str) -> str:
        return f"az://{self.container_name}/{key}"

    def _translate(self, exc: BaseException, during: str, key: str) -> MCOError:
        from azure.core import exceptions as aexc

        where = f"{self.cloud}: {during} {self.uri(key) if key else 'az://' + self.container_name} at {self.endpoint}"
        if isinstance(exc, aexc.ClientAuthenticationError):
            return AccessDenied(f"{where} failed: authentication failed", cloud=self.cloud,
                                hint=f"check {self.auth_source} (the Storage Blob Data Contributor role)")
        if isinstance(exc, (aexc.ServiceRequestError, aexc.ServiceResponseError, ConnectionError, TimeoutError)):
            return Unreachable(f"{where} failed: cannot connect ({type(exc).__name__})", cloud=self.cloud,
                               hint=f"is the endpoint up? check clouds.{self.cloud}.storage.endpoint "
                                    "(`mco local status storage` for the local emulators), then push again")
        if isinstance(exc, aexc.HttpResponseError):
            raw = getattr(exc, "error_code", None)
            code = str(getattr(raw, "value", raw) or "")  # StorageErrorCode enum or plain string
            status = exc.status_code
            if code.lower() == "containernotfound":
                return NotFound(f"{where} failed: the container '{self.container_name}' does not exist",
                                cloud=self.cloud,
                                hint=f"create it (the Pulumi stack does), or fix clouds.{self.cloud}.storage.bucket")
            if status == 403 or code.lower() in ("authorizationfailure", "authenticationfailed",
                                                 "authorizationpermissionmismatch"):
                return AccessDenied(f"{where} failed: access denied ({code or status})", cloud=self.cloud,
                                    hint=f"check {self.auth_source}: the identity needs Storage Blob Data "
                                         "Contributor on the container")
            if status == 404:
                return NotFound(f"{where} failed: not found ({code or status})", cloud=self.cloud)
            if status in (429, 503) or code.lower() in ("serverbusy", "operationtimedout"):
                return Throttled(f"{where} failed: throttled ({code or status})", cloud=self.cloud,
                                 hint="wait and push again")
            if code.lower() in ("md5mismatch", "invalidmd5", "crc64mismatch") or "md5 doesn't match" in str(exc).lower():
                return IntegrityError(f"{where} failed: the service rejected the upload's checksum ({code})",
                                      hint="the bytes changed in transit or on disk; push again")
            return ProviderError(f"{where} failed: {code or status}: {exc.reason or ''}", cloud=self.cloud)
        if isinstance(exc, aexc.AzureError):
            return ProviderError(f"{where} failed: {type(exc).__name__}", cloud=self.cloud)
        return ProviderError(f"{where} failed: {type(exc).__name__}: {exc}", cloud=self.cloud)

    def stat(self, key: str) -> ObjectInfo | None:
        self.check_key(key)
        from azure.core.exceptions import ResourceNotFoundError

        try:
            props = self.container.get_blob_client(key).get_blob_properties()
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise self._translate(exc, "reading", key) from exc
            return None
        except Exception as exc:
            raise self._translate(exc, "reading", key) from exc
        md5 = props.content_settings.content_md5
        return ObjectInfo(key=key, size=int(props.size), sha256=(props.metadata or {}).get("sha256"),
                          md5=bytes(md5).hex() if md5 else None)

    def put_file(self, key: str, path: Path, *, sha256: str, size: int, digests: DigestSource,
                 progress: Progress | None = None) -> UploadResult:
        self.check_key(key)
        from azure.storage.blob import ContentSettings

        lock = threading.Lock()
        sent = [0]

        def hook(current: int, total: int | None) -> None:  # cumulative; called from worker threads
            if progress is not None:
                with lock:
                    if current > sent[0]:
                        progress(current - sent[0])
                        sent[0] = current

        content_type = "application/octet-stream"
        single = size <= MAX_SINGLE_PUT
        blob = self.container.get_blob_client(key)
        try:
            with open(path, "rb") as fh:
                response = blob.upload_blob(
                    fh, length=size, overwrite=True, metadata={"sha256": sha256},
                    # Blocks: each Put Block carries a Content-MD5 the service checks. One Put Blob:
                    # compared below with the MD5 the service computed, so no serial pre-hash is needed.
                    validate_content=not single,
                    content_settings=ContentSettings(content_type=content_type),
                    max_concurrency=MAX_CONCURRENCY, progress_hook=hook)
            if not single:
                return UploadResult(key=key, size=size, verified="azure:content-md5")
            stored = response.get("content_md5") or blob.get_blob_properties().content_settings.content_md5
        except Exception as exc:
            raise self._translate(exc, "uploading", key) from exc
        want = digests().md5
        got = bytes(stored).hex() if stored else None
        if got != want:
            self.delete(key)
            raise IntegrityError(f"{self.cloud}: {self.uri(key)} was stored with Content-MD5 {got}, but the local "
                                 f"file gives {want}: the upload was corrupted; the blob was deleted", hint="push again")
        return UploadResult(key=key, size=size, verified="azure:content-md5")

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/json") -> UploadResult:
        import hashlib

        self.check_key(key)
        from azure.storage.blob import ContentSettings

        md5 = hashlib.md5(data)
        try:
            self.container.get_blob_client(key).upload_blob(
                data, overwrite=True, metadata={"sha256": hashlib.sha256(data).hexdigest()}, validate_content=True,
                content_settings=ContentSettings(content_type=content_type, content_md5=bytearray(md5.digest())))
        except Exception as exc:
            raise self._translate(exc, "uploading", key) from exc
        return UploadResult(key=key, size=len(data), verified="azure:content-md5")

    def get_file(self, key: str, dest: Path, *, progress: Progress | None = None) -> int:
        self.check_key(key)
        done = [0]

        def hook(current: int, total: int | None) -> None:
            if progress is not None and current > done[0]:
                progress(current - done[0])
                done[0] = current

        try:
            with open(dest, "wb") as fh:
                self.container.get_blob_client(key).download_blob(
                    max_concurrency=MAX_CONCURRENCY, progress_hook=hook).readinto(fh)
        except Exception as exc:
            raise self._translate(exc, "downloading", key) from exc
        return dest.stat().st_size

    def get_bytes(self, key: str) -> bytes:
        self.check_key(key)
        try:
            return bytes(self.container.get_blob_client(key).download_blob().readall())
        except Exception as exc:
            raise self._translate(exc, "reading", key) from exc

    def delete(self, key: str) -> None:
        self.check_key(key)
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.container.get_blob_client(key).delete_blob()
        except ResourceNotFoundError:
            return
        except Exception as exc:
            raise self._translate(exc, "deleting", key) from exc

    def list(self, prefix: str) -> list[str]:
        try:
            return [b.name for b in self.container.list_blobs(name_starts_with=prefix)]
        except Exception as exc:
            raise self._translate(exc, "listing", prefix) from exc

    def list_info(self, prefix: str) -> dict[str, ObjectInfo]:
        try:
            found = {}
            for b in self.container.list_blobs(name_starts_with=prefix, include=["metadata"]):
                md5 = b.content_settings.content_md5
                found[b.name] = ObjectInfo(key=b.name, size=int(b.size), sha256=(b.metadata or {}).get("sha256"),
                                           md5=bytes(md5).hex() if md5 else None)
            return found
        except Exception as exc:
            raise self._translate(exc, "listing", prefix) from exc

    def ensure_bucket(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            self.container.create_container()
        except ResourceExistsError:
            return
        except Exception as exc:
            raise self._translate(exc, "creating", "") from exc

    def close(self) -> None:
        self.service.close()


def _etag(value: Any) -> str:
    """ETags as the service sends them in headers (quoted): listings give them bare."""
    return '"' + str(value).strip('"') + '"'


class AzureConditionalStore(AzureBlobStore, ConditionalStore):
    """Blob Storage with preconditions: ``If-None-Match: *`` creates (``overwrite=False``),
    ``If-Match: <ETag>`` replaces and deletes. The service answers 409 BlobAlreadyExists or
    412 ConditionNotMet; the SDK raises ResourceExistsError / ResourceModifiedError for them.
    """

    def __init__(self, cloud: str, storage: Any) -> None:
        super().__init__(cloud, storage, quick=True)

    def where(self) -> str:
        return f"az://{self.container_name} ({self.cloud})"

    def _precondition_detail(self, exc: BaseException) -> str | None:
        from azure.core import exceptions as aexc

        if isinstance(exc, (aexc.ResourceExistsError, aexc.ResourceModifiedError)) or (
                isinstance(exc, aexc.HttpResponseError) and exc.status_code == 412):
            return f"{exc.status_code if isinstance(exc, aexc.HttpResponseError) else ''}"
        return None

    def _access_hint(self) -> str:
        return (f"the identity needs Storage Blob Data Contributor (read, write, delete, list) on container "
                f"'{self.container_name}' (the release state lives under its prefix)")

    def read(self, key: str) -> Versioned | None:
        self.check_key(key)
        from azure.core.exceptions import ResourceNotFoundError

        try:
            stream = self.container.get_blob_client(key).download_blob()
            data = stream.readall()
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise self._conditional(exc, "reading", key) from exc
            return None
        except Exception as exc:
            raise self._conditional(exc, "reading", key) from exc
        return Versioned(bytes(data), _etag(stream.properties.etag))

    def create(self, key: str, data: bytes) -> str:
        self.check_key(key)
        try:
            out = self.container.get_blob_client(key).upload_blob(data, overwrite=False)
        except Exception as exc:
            raise self._conditional(exc, "creating", key) from exc
        return _etag(out["etag"])

    def replace(self, key: str, data: bytes, *, version: str) -> str:
        self.check_key(key)
        from azure.core import MatchConditions

        try:
            out = self.container.get_blob_client(key).upload_blob(
                data, overwrite=True, etag=version, match_condition=MatchConditions.IfNotModified)
        except Exception as exc:
            raise self._conditional(exc, "replacing", key) from exc
        return _etag(out["etag"])

    def delete_if(self, key: str, *, version: str) -> None:
        self.check_key(key)
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.container.get_blob_client(key).delete_blob(etag=version, match_condition=MatchConditions.IfNotModified)
        except ResourceNotFoundError:
            return
        except Exception as exc:
            err = self._conditional(exc, "deleting", key)
            # If-Match on a blob that is gone answers 412 too: gone is what was asked for.
            if isinstance(err, PreconditionFailed) and self.read(key) is None:
                return
            raise err from exc

    def versions(self, prefix: str) -> dict[str, str]:
        try:
            return {b.name: _etag(b.etag) for b in self.container.list_blobs(name_starts_with=prefix)}
        except Exception as exc:
            raise self._conditional(exc, "listing", prefix) from exc

    def listing(self, prefix: str) -> dict[str, Listed]:
        try:
            out = {}
            for b in self.container.list_blobs(name_starts_with=prefix):
                md5 = b.content_settings.content_md5
                out[b.name] = Listed(_etag(b.etag), bytes(md5).hex() if md5 else None)
            return out
        except Exception as exc:
            raise self._conditional(exc, "listing", prefix) from exc
