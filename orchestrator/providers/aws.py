"""AWS: S3 as the artifact store (boto3, imported only when a store is opened).

Uploads go through boto3's transfer manager (multipart above ``PART_SIZE``, parallel
parts, botocore's standard retry mode with backoff) with ``ChecksumAlgorithm=CRC32``: every
request carries the CRC32 of its bytes, which S3 checks on arrival. Afterwards mco reads
the object's ChecksumCRC32 (S3's, computed from what it stored: of the whole object, or
composite over the parts for a multipart upload) and compares it with its own, computed
from the file while it uploads. Small objects (manifests) also carry Content-MD5 and are
compared by ETag.

The local stand-in is moto's server, which stores checksums without checking them on
arrival: that gap is declared in ``emulator_gaps``; the after-the-fact comparison still applies.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from orchestrator.errors import (
    AccessDenied,
    IntegrityError,
    MCOError,
    MissingExtraError,
    NotFound,
    ProviderError,
    Throttled,
    Unreachable,
)
from orchestrator.extras import require_extra
from orchestrator.providers.base import (
    PART_SIZE,
    ArtifactStore,
    Capability,
    DigestKind,
    DigestSource,
    ObjectInfo,
    Progress,
    Provider,
    UploadResult,
)

if TYPE_CHECKING:
    from orchestrator.config import RegistryConfig
    from orchestrator.providers.registry import RegistryCredentials

__all__ = ["EMULATOR_ACCESS_KEY_ID", "EMULATOR_SECRET_ACCESS_KEY", "AwsProvider", "S3Store"]

# Development-only keys for the loopback S3 emulator (moto accepts any; they are not secret
# and guard nothing). Used only with `credentials: emulator`, which requires a loopback endpoint.
EMULATOR_ACCESS_KEY_ID = "mco-emulator"
EMULATOR_SECRET_ACCESS_KEY = "mco-emulator-not-a-secret"

_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "403",
           "ExpiredToken", "InvalidToken", "AccountProblem"}
_THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "503",
              "TooManyRequests", "RequestThrottled"}
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}


class AwsProvider(Provider):
    name = "aws"
    display_name = "Amazon Web Services"
    extra = "aws"
    sdk_package = "boto3"
    overlay = "aws"
    pricing_prefix = "aws"
    default_region = "us-east-1"
    registry_auth = "ecr"
    registry_auth_hint = "check the AWS identity can push to ECR (ecr:*Layer*, ecr:PutImage)"
    color = "#ff9900"
    unsupported: ClassVar[Mapping[Capability, str]] = {}
    upload_digests = frozenset({DigestKind.CRC32})

    def emulator_gaps(self) -> Mapping[Capability, str]:
        storage = self.config.storage
        if storage is not None and storage.credentials == "emulator":
            return {Capability.SERVER_VERIFIED_UPLOAD:
                    "the S3 stand-in (moto) stores Content-MD5 and x-amz-checksum-* without checking them; "
                    "mco still compares the CRC32 it computed from the stored bytes with its own after each upload"}
        return {}

    @classmethod
    def registry_credentials(cls, cloud: str, cfg: RegistryConfig, base_dir: Path | None) -> RegistryCredentials:
        """An ECR login token from boto3's credential chain (the region comes from the registry URL)."""
        try:
            import boto3
            from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
        except ImportError as exc:
            raise MissingExtraError("boto3", cls.extra, purpose="ECR login") from exc
        match = re.match(r"^(\d+)\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com", cfg.url)
        region = match.group(2) if match else None
        try:
            client = boto3.client("ecr", region_name=region)
            data = client.get_authorization_token()["authorizationData"][0]
        except NoCredentialsError as exc:
            raise AccessDenied(f"{cloud}: no AWS credentials for the ECR login to {cfg.url}", cloud=cloud,
                               hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY") from exc
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise AccessDenied(f"{cloud}: ECR refused a login token ({code})", cloud=cloud,
                               hint="the identity needs ecr:GetAuthorizationToken") from exc
        except BotoCoreError as exc:
            raise Unreachable(f"{cloud}: cannot reach ECR for a login token: {type(exc).__name__}", cloud=cloud,
                              hint="check the network and the region in the registry URL") from exc
        from orchestrator.providers.registry import RegistryCredentials

        username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        return RegistryCredentials(username, password)

    def artifact_store(self) -> S3Store:
        return S3Store(self.cloud, self.storage_config())


class S3Store(ArtifactStore):
    def __init__(self, cloud: str, storage: Any) -> None:
        boto3 = require_extra("boto3", package="boto3", extra="aws", purpose="Amazon S3")
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.cloud = cloud
        self.storage = storage
        self.bucket = storage.bucket
        self.endpoint = storage.endpoint or f"https://s3.{storage.region or 'us-east-1'}.amazonaws.com"
        config = Config(
            retries={"max_attempts": 4, "mode": "standard"},  # backoff with jitter on 5xx/throttling/resets
            connect_timeout=3, read_timeout=60, max_pool_connections=16,
            s3={"addressing_style": "path"} if storage.endpoint else None,
        )
        kwargs: dict[str, Any] = {"region_name": storage.region or "us-east-1", "config": config,
                                  "verify": storage.verify_tls}
        if storage.endpoint:
            kwargs["endpoint_url"] = storage.endpoint
        if storage.credentials == "emulator":
            kwargs.update(aws_access_key_id=EMULATOR_ACCESS_KEY_ID, aws_secret_access_key=EMULATOR_SECRET_ACCESS_KEY)
        try:
            self.client = boto3.session.Session().client("s3", **kwargs)
        except Exception as exc:  # botocore raises several unrelated types for bad settings
            raise self._translate(exc, "configuring the S3 client for", "") from exc
        self.transfer = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE,
                                       max_concurrency=10, use_threads=True)

    def __repr__(self) -> str:
        return f"S3Store({self.cloud!r}, {self.bucket!r}, {self.endpoint!r})"

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # ---- error translation ---------------------------------------------------------------

    def _translate(self, exc: BaseException, during: str, key: str) -> MCOError:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
            ReadTimeoutError,
        )

        where = f"{self.cloud}: {during} {self.uri(key) if key else self.bucket} at {self.endpoint}"
        cause: BaseException = exc
        while not isinstance(cause, (ClientError, BotoCoreError)):
            inner = cause.__cause__ or cause.__context__  # boto3's S3UploadFailedError wraps the ClientError
            if inner is None:
                break
            cause = inner
        if isinstance(cause, (NoCredentialsError, PartialCredentialsError)):
            return AccessDenied(f"{where} failed: no AWS credentials found", cloud=self.cloud,
                                hint="set AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or use an instance role")
        if isinstance(cause, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)):
            return Unreachable(f"{where} failed: cannot connect ({type(cause).__name__})", cloud=self.cloud,
                               hint=f"is the endpoint up? check clouds.{self.cloud}.storage.endpoint "
                                    "(`mco local status storage` for the local emulators), then push again")
        if isinstance(cause, ClientError):
            err = cause.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            msg = str(err.get("Message") or code)
            if code == "NoSuchBucket":
                return NotFound(f"{where} failed: the bucket '{self.bucket}' does not exist", cloud=self.cloud,
                                hint=f"create it (the Pulumi stack does), or fix clouds.{self.cloud}.storage.bucket")
            if code in _DENIED or status == 403:
                return AccessDenied(f"{where} failed: access denied ({code})", cloud=self.cloud,
                                    hint="the identity needs s3:GetObject, s3:PutObject, s3:ListBucket, s3:DeleteObject")
            if code in _THROTTLED or status in (429, 503):
                return Throttled(f"{where} failed: throttled ({code})", cloud=self.cloud, hint="wait and push again")
            if code in _MISSING_KEY or status == 404:
                return NotFound(f"{where} failed: not found", cloud=self.cloud)
            if code in ("BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch"):
                return IntegrityError(f"{where} failed: S3 rejected the upload's checksum ({code})",
                                      hint="the bytes changed in transit or on disk; push again")
            return ProviderError(f"{where} failed: {code}: {msg}", cloud=self.cloud)
        if isinstance(cause, BotoCoreError):
            return ProviderError(f"{where} failed: {cause}", cloud=self.cloud)
        if isinstance(cause, OSError):
            return Unreachable(f"{where} failed: {cause.strerror or cause}", cloud=self.cloud)
        return ProviderError(f"{where} failed: {type(cause).__name__}: {cause}", cloud=self.cloud)

    # ---- primitives --------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo | None:
        self.check_key(key)
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_KEY and code != "NoSuchBucket":
                return None
            raise self._translate(exc, "reading", key) from exc
        except Exception as exc:
            raise self._translate(exc, "reading", key) from exc
        etag = str(head.get("ETag", "")).strip('"')
        meta = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
        return ObjectInfo(key=key, size=int(head.get("ContentLength", 0)), sha256=meta.get("sha256"),
                          md5=etag if etag and "-" not in etag else None, extra={"etag": etag})

    def _verify_checksum(self, key: str, path: Path, digests: DigestSource, size: int) -> None:
        """Compare the CRC32 S3 computed from the stored bytes with ours (whole, or composite for multipart)."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except Exception as exc:
            raise self._translate(exc, "verifying", key) from exc
        got = str(head.get("ChecksumCRC32") or "")
        stored = int(head.get("ContentLength", -1))
        value = got.partition("-")[0]
        local = digests()
        if head.get("ChecksumType") == "FULL_OBJECT" and len(local.crc32_parts) > 1:
            import zlib

            crc = 0  # rare: a full-object CRC for a multipart upload; read the file once more
            with open(path, "rb") as fh:
                while chunk := fh.read(PART_SIZE):
                    crc = zlib.crc32(chunk, crc)
            expected = base64.b64encode(crc.to_bytes(4, "big")).decode()
        else:
            expected = local.s3_crc32(composite=True)
        if not got:
            raise IntegrityError(f"{self.cloud}: {self.uri(key)} has no CRC32 checksum at {self.endpoint}, "
                                 "so the upload cannot be verified", hint="use an S3 endpoint with flexible checksums")
        if value != expected or stored != size:
            self.delete(key)
            raise IntegrityError(
                f"{self.cloud}: {self.uri(key)} was stored with CRC32 {got} ({stored} bytes), but the local file "
                f"gives {expected} ({size} bytes): the upload was corrupted; the object was deleted",
                hint="push again")

    def put_file(self, key: str, path: Path, *, sha256: str, size: int, digests: DigestSource,
                 progress: Progress | None = None) -> UploadResult:
        self.check_key(key)
        lock = threading.Lock()

        def callback(n: int) -> None:  # called from the transfer manager's threads
            if progress is not None:
                with lock:
                    progress(n)

        try:
            self.client.upload_file(str(path), self.bucket, key, Config=self.transfer, Callback=callback,
                                    ExtraArgs={"Metadata": {"sha256": sha256}, "ChecksumAlgorithm": "CRC32",
                                               "ContentType": "application/octet-stream"})
        except Exception as exc:
            raise self._translate(exc, "uploading", key) from exc
        self._verify_checksum(key, path, digests, size)
        return UploadResult(key=key, size=size, verified="s3:crc32")

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/json") -> UploadResult:
        import hashlib

        self.check_key(key)
        md5 = hashlib.md5(data)
        try:
            response = self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type,
                                              ContentMD5=base64.b64encode(md5.digest()).decode(),
                                              Metadata={"sha256": hashlib.sha256(data).hexdigest()})
        except Exception as exc:
            raise self._translate(exc, "uploading", key) from exc
        etag = str(response.get("ETag", "")).strip('"')
        if etag != md5.hexdigest():
            self.delete(key)
            raise IntegrityError(f"{self.cloud}: {self.uri(key)} was stored with ETag {etag}, not the md5 "
                                 f"{md5.hexdigest()} of what was sent; the object was deleted", hint="push again")
        return UploadResult(key=key, size=len(data), verified="s3:etag-md5")

    def get_file(self, key: str, dest: Path, *, progress: Progress | None = None) -> int:
        self.check_key(key)
        try:
            self.client.download_file(self.bucket, key, str(dest), Config=self.transfer,
                                      Callback=progress or (lambda n: None))
        except Exception as exc:
            raise self._translate(exc, "downloading", key) from exc
        return dest.stat().st_size

    def get_bytes(self, key: str) -> bytes:
        self.check_key(key)
        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except Exception as exc:
            raise self._translate(exc, "reading", key) from exc

    def delete(self, key: str) -> None:
        self.check_key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            err = self._translate(exc, "deleting", key)
            if not isinstance(err, NotFound):
                raise err from exc

    def list(self, prefix: str) -> list[str]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            return [obj["Key"] for page in pages for obj in page.get("Contents", [])]
        except Exception as exc:
            raise self._translate(exc, "listing", prefix) from exc

    def list_info(self, prefix: str) -> dict[str, ObjectInfo]:
        """S3 listings carry no user metadata: list, then HEAD the listed objects in parallel."""
        from concurrent.futures import ThreadPoolExecutor

        keys = self.list(prefix)
        if not keys:
            return {}
        with ThreadPoolExecutor(min(8, len(keys))) as pool:
            infos = list(pool.map(self.stat, keys))
        return {i.key: i for i in infos if i is not None}

    def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                raise self._translate(exc, "checking", "") from exc
        except Exception as exc:
            raise self._translate(exc, "checking", "") from exc
        region = self.storage.region or "us-east-1"
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(**kwargs)
        except Exception as exc:
            raise self._translate(exc, "creating", "") from exc

    def close(self) -> None:
        self.client.close()

