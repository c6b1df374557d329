"""AWS: S3 as the artifact store (boto3, imported only when a store is opened).

Uploads are one PutObject up to ``PART_SIZE`` and a multipart upload above it, its parts
sent in parallel (``MAX_CONCURRENCY``, as boto3's transfer manager does), each request with
botocore's standard retry mode. Every part is read once: the CRC32 mco computes from those
bytes goes with the request (``x-amz-checksum-crc32``, which S3 checks on arrival, so
botocore does not hash the part again), and must equal the CRC32 of the same part in the
read that computed the file's sha256 (``FileDigests.crc32_parts``): what was hashed is what
was sent. The composite CRC32 S3 reports when the upload completes (from the response; a
HEAD only where the response lacks it, as moto's does) is compared with mco's. Small objects
(manifests) carry Content-MD5 and are compared by ETag.

The local stand-in is moto's server, which stores a request's checksum header without
checking it: that gap is declared in ``emulator_gaps``. For multipart uploads moto computes
the composite CRC32 from the parts it stored, and mco compares it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import threading
import zlib
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
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
    ConditionalStore,
    DigestKind,
    DigestSource,
    Listed,
    ObjectInfo,
    Progress,
    Provider,
    UploadResult,
    Versioned,
    crc32_b64,
)

if TYPE_CHECKING:
    from orchestrator.config import RegistryConfig
    from orchestrator.providers.registry import RegistryCredentials

__all__ = ["EMULATOR_ACCESS_KEY_ID", "EMULATOR_SECRET_ACCESS_KEY", "AwsProvider", "S3ConditionalStore", "S3Store"]

# Development-only keys for the loopback S3 emulator (moto accepts any; they are not secret
# and guard nothing). Used only with `credentials: emulator`, which requires a loopback endpoint.
EMULATOR_ACCESS_KEY_ID = "mco-emulator"
EMULATOR_SECRET_ACCESS_KEY = "mco-emulator-not-a-secret"

_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "403",
           "ExpiredToken", "InvalidToken", "AccountProblem"}
_THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "503",
              "TooManyRequests", "RequestThrottled"}
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}
MAX_CONCURRENCY = 10  # parts in flight per store, as boto3's transfer manager sends per file

_SESSION_LOCK = threading.Lock()
_SESSION: Any = None


def _s3_client(**kwargs: Any) -> Any:
    """An S3 client from one process-wide boto3 Session, as ``boto3.client()`` makes them.

    A fresh Session parses botocore's service models again: about 0.1 s of CPU per store.
    Sessions are not thread-safe, so clients are made under a lock (clients themselves are).
    """
    global _SESSION
    boto3 = require_extra("boto3", package="boto3", extra="aws", purpose="Amazon S3")
    with _SESSION_LOCK:
        if _SESSION is None:
            _SESSION = boto3.session.Session()
        return _SESSION.client("s3", **kwargs)


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
    # EKS Pod Identity's agent on every node; IRSA instead calls STS on 443, which the store's
    # rule already opens.
    identity_egress = (("169.254.170.23/32", 80),)

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

    def conditional_store(self) -> S3ConditionalStore:
        return S3ConditionalStore(self.cloud, self.storage_config())


class S3Store(ArtifactStore):
    def __init__(self, cloud: str, storage: Any, *, attempts: int = 4, connect_timeout: float = 3,
                 read_timeout: float = 60) -> None:
        require_extra("boto3", package="boto3", extra="aws", purpose="Amazon S3")
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.cloud = cloud
        self.storage = storage
        self.bucket = storage.bucket
        self.endpoint = storage.endpoint or f"https://s3.{storage.region or 'us-east-1'}.amazonaws.com"
        config = Config(
            retries={"max_attempts": attempts, "mode": "standard"},  # backoff with jitter on 5xx/throttling/resets
            connect_timeout=connect_timeout, read_timeout=read_timeout, max_pool_connections=MAX_CONCURRENCY + 8,
            s3={"addressing_style": "path"} if storage.endpoint else None,
        )
        kwargs: dict[str, Any] = {"region_name": storage.region or "us-east-1", "config": config,
                                  "verify": storage.verify_tls}
        if storage.endpoint:
            kwargs["endpoint_url"] = storage.endpoint
        if storage.credentials == "emulator":
            kwargs.update(aws_access_key_id=EMULATOR_ACCESS_KEY_ID, aws_secret_access_key=EMULATOR_SECRET_ACCESS_KEY)
        try:
            self.client = _s3_client(**kwargs)
        except Exception as exc:  # botocore raises several unrelated types for bad settings
            raise self._translate(exc, "configuring the S3 client for", "") from exc
        # Downloads (get_file) go through boto3's transfer manager; uploads are mco's own (put_file).
        self.transfer = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE,
                                       max_concurrency=10, use_threads=True)
        self._parts: ThreadPoolExecutor | None = None
        self._parts_lock = threading.Lock()

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

    def _part_pool(self) -> ThreadPoolExecutor:
        with self._parts_lock:
            if self._parts is None:
                self._parts = ThreadPoolExecutor(MAX_CONCURRENCY, f"mco-{self.cloud}-part")
            return self._parts

    def _put_multipart(self, key: str, path: Path, size: int, extra: dict[str, Any],
                       progress: Progress | None) -> tuple[tuple[int, ...], str | None]:
        """Upload ``path`` in ``PART_SIZE`` parts, in parallel. Returns the CRC32 of each part
        as sent and the composite ChecksumCRC32 from S3's response (None if it lacks one)."""
        failed = threading.Event()
        lock = threading.Lock()

        def send(fd: int, upload_id: str, number: int, offset: int, length: int) -> tuple[dict[str, Any], int]:
            if failed.is_set():  # another part failed: do not start this one
                raise _Abandoned
            data = os.pread(fd, length, offset)
            if len(data) != length:
                raise IntegrityError(f"{path} shrank while it was being uploaded", hint="push again")
            crc = zlib.crc32(data)
            response = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                               Body=data, ChecksumCRC32=crc32_b64(crc))
            if progress is not None:
                with lock:
                    progress(length)
            return {"PartNumber": number, "ETag": response["ETag"], "ChecksumCRC32": crc32_b64(crc)}, crc

        fd = os.open(path, os.O_RDONLY)
        try:
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, ChecksumAlgorithm="CRC32",
                                                            ChecksumType="COMPOSITE", **extra)["UploadId"]
            try:
                pool = self._part_pool()
                futures: list[Future[tuple[dict[str, Any], int]]] = [
                    pool.submit(send, fd, upload_id, n + 1, offset, min(PART_SIZE, size - offset))
                    for n, offset in enumerate(range(0, size, PART_SIZE))]
                parts, first_error = [], None
                for fut in futures:  # wait for every part, so none still reads the file after this
                    try:
                        parts.append(fut.result())
                    except Exception as exc:
                        failed.set()
                        if first_error is None and not isinstance(exc, _Abandoned):
                            first_error = exc
                if first_error is not None:
                    raise first_error
                done = self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id,
                    MultipartUpload={"Parts": [p for p, _ in parts]})
            except BaseException:
                # Parts of an unfinished upload are never visible; aborting frees their storage. The
                # endpoint may be what failed, so an abort that fails too is left to the bucket's lifecycle.
                with contextlib.suppress(Exception):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                raise
        finally:
            os.close(fd)
        reported = done.get("ChecksumCRC32") if done.get("ChecksumType") in (None, "COMPOSITE") else None
        return tuple(crc for _, crc in parts), reported  # None: read back by HEAD

    def _stored_crc32(self, key: str, path: Path, size: int) -> tuple[str, str | None]:
        """(the CRC32 S3 computed from the stored object, by HEAD; the value to compare it with if
        that is not the composite of the parts sent, else None)."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except Exception as exc:
            raise self._translate(exc, "verifying", key) from exc
        got = str(head.get("ChecksumCRC32") or "")
        if not got:
            raise IntegrityError(f"{self.cloud}: {self.uri(key)} has no CRC32 checksum at {self.endpoint}, "
                                 "so the upload cannot be verified", hint="use an S3 endpoint with flexible checksums")
        if int(head.get("ContentLength", -1)) != size:
            return f"{got} ({head.get('ContentLength')} bytes)", "-"  # never equal
        if head.get("ChecksumType") != "FULL_OBJECT":
            return got, None
        crc = 0  # rare: a store that reports a full-object CRC for a composite upload; read the file again
        with open(path, "rb") as fh:
            while chunk := fh.read(PART_SIZE):
                crc = zlib.crc32(chunk, crc)
        return got, crc32_b64(crc)

    def put_file(self, key: str, path: Path, *, sha256: str, size: int, digests: DigestSource,
                 progress: Progress | None = None) -> UploadResult:
        self.check_key(key)
        extra: dict[str, Any] = {"Metadata": {"sha256": sha256}, "ContentType": "application/octet-stream"}
        try:
            if size <= PART_SIZE:
                with open(path, "rb") as fh:
                    data = fh.read(size + 1)
                if len(data) != size:
                    raise IntegrityError(f"{path} changed size while it was being uploaded", hint="push again")
                sent: tuple[int, ...] = (zlib.crc32(data),)
                response = self.client.put_object(Bucket=self.bucket, Key=key, Body=data,
                                                  ChecksumCRC32=crc32_b64(sent[0]), **extra)
                if progress is not None:
                    progress(size)
                # S3 checked the header against the body on arrival; moto echoes it or omits it.
                reported = response.get("ChecksumCRC32")
            else:
                sent, reported = self._put_multipart(key, path, size, extra, progress)
        except MCOError:
            raise
        except Exception as exc:
            raise self._translate(exc, "uploading", key) from exc
        local = digests()
        if (local.crc32_parts or (0,)) != sent:  # an empty file has no part, and sends CRC32 0
            self.delete(key)
            raise IntegrityError(f"{path} changed while it was being uploaded: the bytes sent are not the bytes "
                                 f"whose sha256 was checked; {self.uri(key)} was deleted", hint="push again")
        expected = local.s3_crc32(composite=True)
        if reported is None and len(sent) > 1:
            reported, other = self._stored_crc32(key, path, size)
            expected = other or expected
        if reported is not None and reported.partition("-")[0] != expected:  # composite values end in -<parts>
            self.delete(key)
            raise IntegrityError(
                f"{self.cloud}: {self.uri(key)} was stored with CRC32 {reported}, but the {size} bytes sent give "
                f"{expected}: the upload was corrupted; the object was deleted", hint="push again")
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
        if self._parts is not None:
            self._parts.shutdown(wait=True)
        self.client.close()


class S3ConditionalStore(S3Store, ConditionalStore):
    """S3 with preconditions: ``If-None-Match: *`` creates, ``If-Match: <ETag>`` replaces and deletes.

    S3 answers 412 PreconditionFailed when the precondition does not hold, and 409
    ConditionalRequestConflict when another conditional write to the key is in flight: both
    mean "someone else wrote first". The release state must notice a dead store within a
    second or two, so requests are retried less than for bundle pushes.
    """

    def __init__(self, cloud: str, storage: Any) -> None:
        # One attempt: the state is replicated, so a store that fails is outvoted at once
        # instead of delaying every write by a retry's backoff.
        super().__init__(cloud, storage, attempts=1, connect_timeout=1, read_timeout=10)

    def where(self) -> str:
        return f"s3://{self.bucket} ({self.cloud})"

    def _precondition_detail(self, exc: BaseException) -> str | None:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if status == 412 or (status == 409 and code == "ConditionalRequestConflict"):
                return code
        return None

    def _access_hint(self) -> str:
        return (f"the identity needs s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket on "
                f"bucket '{self.bucket}' (the release state lives under its prefix)")

    def read(self, key: str) -> Versioned | None:
        self.check_key(key)
        from botocore.exceptions import ClientError

        try:
            got = self.client.get_object(Bucket=self.bucket, Key=key)
            return Versioned(bytes(got["Body"].read()), str(got["ETag"]))
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_KEY and code != "NoSuchBucket":
                return None
            raise self._conditional(exc, "reading", key) from exc
        except Exception as exc:
            raise self._conditional(exc, "reading", key) from exc

    def create(self, key: str, data: bytes) -> str:
        self.check_key(key)
        try:
            return str(self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*",
                                              ContentType="application/json")["ETag"])
        except Exception as exc:
            raise self._conditional(exc, "creating", key) from exc

    def replace(self, key: str, data: bytes, *, version: str) -> str:
        self.check_key(key)
        try:
            return str(self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfMatch=version,
                                              ContentType="application/json")["ETag"])
        except Exception as exc:
            raise self._conditional(exc, "replacing", key) from exc

    def delete_if(self, key: str, *, version: str) -> None:
        self.check_key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key, IfMatch=version)
        except Exception as exc:
            err = self._conditional(exc, "deleting", key)
            if not isinstance(err, NotFound):
                raise err from exc

    def versions(self, prefix: str) -> dict[str, str]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            return {obj["Key"]: str(obj["ETag"]) for page in pages for obj in page.get("Contents", [])}
        except Exception as exc:
            raise self._conditional(exc, "listing", prefix) from exc

    def listing(self, prefix: str) -> dict[str, Listed]:
        # A single PUT's ETag is the MD5 of its bytes (a multipart one has a "-N" suffix).
        return {k: Listed(v, None if "-" in v else v.strip('"')) for k, v in self.versions(prefix).items()}


class _Abandoned(Exception):
    """A part not started because another part of the same upload had failed."""

