"""Container registries: ECR, Artifact Registry, ACR and local OCI registries, behind one interface.

    ContainerRegistry (Protocol)   push an image, read a manifest digest, list the catalog
    └── OCIRegistry                the OCI distribution API; pushes go through the Docker engine
        auth                       none | basic (env var or 0600 file) | a cloud's own identity,
                                   logged in by its provider (``registry_credentials`` in
                                   providers/aws.py, gcp.py, azure.py)

Pushes report the manifest digest; everything downstream names the image as
``REGISTRY/REPO/NAME@sha256:...``, never by a tag. Registry and SDK errors become
``AccessDenied``, ``NotFound``, ``Throttled`` or ``Unreachable`` naming the cloud and the fix,
and no message ever carries a password or token. Cloud SDKs are imported only inside the
adapter that needs them.
"""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from orchestrator.config import RegistryConfig
from orchestrator.errors import (
    AccessDenied,
    ConfigError,
    NotFound,
    ProviderError,
    Throttled,
    Unreachable,
)
from orchestrator.packaging.oci import MANIFEST_MEDIA_TYPE, Blob, ImageLayout
from orchestrator.secret_files import read_secret_file

__all__ = [
    "ContainerRegistry",
    "OCIRegistry",
    "PushedImage",
    "RegistryCredentials",
    "basic_credentials",
    "registry_for",
]

MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])
ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class RegistryCredentials:
    username: str
    password: str = field(repr=False)

    def docker_auth(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password}


@dataclass(frozen=True)
class PushedImage:
    cloud: str
    repository: str        # host/prefix/name
    tag: str
    digest: str            # sha256:... of the manifest
    layers_pushed: int
    layers_existing: int
    seconds: float
    bytes_sent: int = 0

    @property
    def ref(self) -> str:
        return f"{self.repository}@{self.digest}"

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.ref, "image_repository": self.repository, "image_digest": self.digest,
                "image_tag": self.tag, "layers_pushed": self.layers_pushed,
                "layers_existing": self.layers_existing, "bytes_sent": self.bytes_sent,
                "push_seconds": self.seconds, "transferred": self.layers_pushed > 0}


class ContainerRegistry(Protocol):
    """What mco needs from a cloud's container registry."""

    cloud: str
    host: str

    def repository_for(self, name: str) -> str:
        """``host/prefix/name``: where an image called ``name`` goes."""

    def push(self, layout: ImageLayout, name: str, tag: str, progress: ProgressFn | None = None) -> PushedImage:
        """Push an exported image (blobs + manifest); return the manifest digest.

        Blobs the registry already has are not sent, so re-pushing transfers no layer."""

    def manifest_digest(self, name: str, reference: str) -> str | None:
        """The digest the registry holds for ``name:reference`` (tag or digest); None if absent."""

    def catalog(self) -> list[str]:
        """Repository names in the registry."""


# ---------------------------------------------------------------- auth adapters

def basic_credentials(cloud: str, cfg: RegistryConfig, base_dir: Path | None) -> RegistryCredentials | None:
    username = (os.environ.get(cfg.username_env) if cfg.username_env else None) or cfg.username
    password = os.environ.get(cfg.password_env) if cfg.password_env else None
    if not password and cfg.password_file is not None:
        path = cfg.password_file if cfg.password_file.is_absolute() or base_dir is None else base_dir / cfg.password_file
        password = read_secret_file(path, what=f"{cloud}: the registry password file",
                                    hint="run `mco local up registries`, or fix clouds.<cloud>.registry.password_file")
    if not username or not password:
        where = " or ".join(filter(None, [f"${cfg.password_env}" if cfg.password_env else None,
                                          "password_file" if cfg.password_file else None])) or "password_env"
        raise ConfigError(f"{cloud}: the registry {cfg.url} uses basic auth but no "
                          f"{'user name' if not username else 'password'} was found",
                          hint=f"set username (or username_env) and {where} in clouds.{cloud}.registry")
    return RegistryCredentials(username, password)


# ---------------------------------------------------------------- distribution API auth

class _RegistryAuth(httpx.Auth):
    """Answer a registry's challenge: Basic, or the Bearer token flow (token endpoint with Basic)."""

    def __init__(self, credentials: RegistryCredentials | None, verify: bool, *, cloud: str, cfg: RegistryConfig) -> None:
        self._creds = credentials
        self._verify = verify
        self._cloud = cloud
        self._cfg = cfg
        self._header: str | None = None

    def _check_realm(self, realm: str) -> None:
        """The token endpoint gets the credentials: only over TLS, and only on the registry's own
        host or one the config names (``token_realm_hosts``)."""
        parsed = urlsplit(realm)
        where = f"clouds.{self._cloud}.registry"
        if parsed.scheme != "https":
            raise AccessDenied(f"{self._cloud}: the registry {self._cfg.url} asks for credentials at {realm}, "
                               "which is not HTTPS; refusing to send them in the clear", cloud=self._cloud,
                               hint="the registry's token service must use https")
        host = parsed.hostname or ""
        if host != self._cfg.hostname and host not in self._cfg.token_realm_hosts:
            raise AccessDenied(f"{self._cloud}: the registry {self._cfg.url} asks for credentials at another host, "
                               f"{host}; refusing to send them there", cloud=self._cloud,
                               hint=f"if {host} is the registry's own token service, add it to "
                                    f"{where}.token_realm_hosts")

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._header:
            request.headers["Authorization"] = self._header
        response = yield request
        if response.status_code != 401:
            return
        challenge = response.headers.get("www-authenticate", "")
        scheme, _, params = challenge.partition(" ")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        basic = None
        if self._creds:
            raw = f"{self._creds.username}:{self._creds.password}".encode()
            basic = "Basic " + base64.b64encode(raw).decode()
        if scheme.lower() == "basic" and basic:
            self._header = basic
        elif scheme.lower() == "bearer" and fields.get("realm"):
            self._check_realm(fields["realm"])
            query = {k: v for k, v in fields.items() if k in ("service", "scope")}
            headers = {"Authorization": basic} if basic else {}
            token_resp = httpx.get(fields["realm"], params=query, headers=headers, timeout=30, verify=self._verify)
            if token_resp.status_code != 200:
                return
            body = token_resp.json()
            self._header = f"Bearer {body.get('token') or body.get('access_token')}"
        else:
            return
        request.headers["Authorization"] = self._header
        yield request


# ---------------------------------------------------------------- the registry

_UNREACHABLE = re.compile(r"connection refused|no such host|i/o timeout|dial tcp|connection reset|EOF|"
                          r"server misbehaving|network is unreachable|context deadline exceeded", re.I)
_DENIED = re.compile(r"unauthorized|authentication required|denied|forbidden|incorrect username|\b40[13]\b", re.I)
_MISSING = re.compile(r"name unknown|repository .* not found|does not exist|NAME_UNKNOWN", re.I)
_THROTTLED = re.compile(r"toomanyrequests|too many requests|429|rate limit", re.I)


class OCIRegistry:
    """A registry that speaks the OCI distribution API (all three clouds do, and so does docker-registry)."""

    def __init__(self, cloud: str, cfg: RegistryConfig, *, base_dir: Path | None = None) -> None:
        self.cloud = cloud
        self.cfg = cfg
        self.host = cfg.url.removeprefix("https://").removeprefix("http://").rstrip("/")
        self.base_dir = base_dir
        self._creds: RegistryCredentials | None = None
        self._creds_loaded = False

    def __repr__(self) -> str:
        return f"OCIRegistry({self.cloud!r}, {self.host!r}, auth={self.cfg.auth!r})"

    # -- naming
    def repository_for(self, name: str) -> str:
        prefix = self.cfg.repository.strip("/")
        return f"{self.host}/{prefix}/{name}" if prefix else f"{self.host}/{name}"

    def _path_for(self, name: str) -> str:
        return self.repository_for(name).removeprefix(self.host + "/")

    # -- auth
    def credentials(self) -> RegistryCredentials | None:
        if not self._creds_loaded:
            auth = self.cfg.auth
            if auth == "none":
                self._creds = None
            elif auth == "basic":
                self._creds = basic_credentials(self.cloud, self.cfg, self.base_dir)
            else:  # a cloud's own identity: its provider knows how to log in
                from orchestrator.providers.loader import provider_for_registry_auth

                self._creds = provider_for_registry_auth(auth).registry_credentials(self.cloud, self.cfg,
                                                                                     self.base_dir)
            self._creds_loaded = True
        return self._creds

    def _scrub(self, text: str) -> str:
        creds = self._creds
        if creds and creds.password:
            text = text.replace(creds.password, "***")
        return text

    def _auth_hint(self) -> str:
        auth = self.cfg.auth
        if auth == "basic":
            where = " or ".join(filter(None, [f"${self.cfg.password_env}" if self.cfg.password_env else None,
                                              str(self.cfg.password_file) if self.cfg.password_file else None]))
            return f"check the user name and the password in {where or 'the configured secret'}"
        if auth == "none":
            return f"the registry wants credentials: set clouds.{self.cloud}.registry.auth"
        from orchestrator.providers.loader import provider_for_registry_auth

        return provider_for_registry_auth(auth).registry_auth_hint

    def _translate(self, message: str, *, during: str) -> ProviderError:
        text = self._scrub(message.strip())
        first = text.splitlines()[0][:300] if text else "unknown error"
        where = f"{self.cloud}: {during} {self.host} failed: {first}"
        if _THROTTLED.search(text):
            return Throttled(where, cloud=self.cloud, hint="wait and push again")
        if _DENIED.search(text):
            return AccessDenied(where, cloud=self.cloud, hint=self._auth_hint())
        if "server gave HTTP response to HTTPS client" in text:
            return Unreachable(where, cloud=self.cloud,
                               hint=f"{self.host} speaks plain HTTP: add it to the Docker engine's "
                                    "insecure-registries (daemon.json) and set insecure_http: true")
        if _UNREACHABLE.search(text):
            return Unreachable(where, cloud=self.cloud,
                               hint=f"is the registry running? check clouds.{self.cloud}.registry.url "
                                    "(`mco local status registries` for the local ones)")
        if _MISSING.search(text):
            return NotFound(where, cloud=self.cloud,
                            hint="create the repository first (the Pulumi stack does; ECR needs it)")
        return ProviderError(where, cloud=self.cloud, hint="see the registry's log")

    # -- distribution API (reads)
    def _api(self) -> httpx.Client:
        scheme = "http" if self.cfg.insecure_http else "https"
        return httpx.Client(base_url=f"{scheme}://{self.host}", timeout=30, verify=True,
                            auth=_RegistryAuth(self.credentials(), verify=True, cloud=self.cloud, cfg=self.cfg))

    def _get(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            with self._api() as api:
                resp = api.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._translate(f"{type(exc).__name__}: connection refused or timed out ({exc})",
                                  during="reading from") from exc
        if resp.status_code in (401, 403):
            raise self._translate(f"HTTP {resp.status_code} unauthorized", during="reading from")
        if resp.status_code == 429:
            raise self._translate("HTTP 429 too many requests", during="reading from")
        return resp

    def manifest_digest(self, name: str, reference: str) -> str | None:
        resp = self._get("HEAD", f"/v2/{self._path_for(name)}/manifests/{reference}",
                         headers={"Accept": MANIFEST_TYPES})
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._translate(f"HTTP {resp.status_code} for manifest {reference}", during="reading from")
        return resp.headers.get("docker-content-digest")

    def catalog(self) -> list[str]:
        resp = self._get("GET", "/v2/_catalog", params={"n": 1000})
        if resp.status_code != 200:
            raise self._translate(f"HTTP {resp.status_code} for the catalog", during="reading from")
        return list(resp.json().get("repositories") or [])

    # -- push: blobs the registry lacks, then the manifest under a tag
    def _upload_blob(self, api: httpx.Client, path: str, blob: Blob) -> bool:
        """Send one blob unless the registry has it. Returns whether bytes were sent."""
        head = api.head(f"/v2/{path}/blobs/{blob.digest}")
        if head.status_code == 200:
            return False
        self._check(head, "checking a layer on", ok=(404,))
        start = api.post(f"/v2/{path}/blobs/uploads/")
        self._check(start, "starting an upload to", ok=(202,))
        location = start.headers["location"]
        # One PATCH with the whole blob, then PUT with the digest: every registry takes this.
        with open(blob.path, "rb") as fh:
            patch = api.patch(location, content=_file_chunks(fh),
                              headers={"Content-Type": "application/octet-stream",
                                       "Content-Length": str(blob.size)})
        self._check(patch, "uploading a layer to", ok=(202, 204))
        location = patch.headers.get("location", location)
        sep = "&" if "?" in location else "?"
        done = api.put(f"{location}{sep}digest={blob.digest}", headers={"Content-Length": "0"})
        self._check(done, "finishing an upload to", ok=(201, 204))
        return True

    def _check(self, resp: httpx.Response, during: str, *, ok: tuple[int, ...]) -> None:
        if resp.status_code in ok or resp.status_code in (200, 201, 202):
            return
        try:
            errors = resp.json().get("errors") or []
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except ValueError:
            detail = resp.text[:200]
        if resp.status_code in (401, 403):
            who = f"user '{self._creds.username}'" if self._creds else "no credentials"
            detail = f"the registry refused the login ({who}): {detail or 'unauthorized'}"
        raise self._translate(f"HTTP {resp.status_code} {detail}", during=during)

    def push(self, layout: ImageLayout, name: str, tag: str, progress: ProgressFn | None = None) -> PushedImage:
        started = time.perf_counter()
        path = self._path_for(name)
        sent = kept = sent_bytes = 0
        try:
            with self._api() as api:
                for i, blob in enumerate(layout.layers):
                    if progress:
                        progress(f"layer {i + 1}/{len(layout.layers)} ({blob.size / 1e6:.1f} MB)")
                    if self._upload_blob(api, path, blob):
                        sent += 1
                        sent_bytes += blob.size
                    else:
                        kept += 1
                if self._upload_blob(api, path, layout.config):
                    sent_bytes += layout.config.size
                # Tags may be immutable (ECR): re-putting a manifest the tag already names is skipped.
                resp = api.head(f"/v2/{path}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES})
                if resp.status_code != 200 or resp.headers.get("docker-content-digest") != layout.digest:
                    resp = api.put(f"/v2/{path}/manifests/{tag}", content=layout.manifest,
                                   headers={"Content-Type": MANIFEST_MEDIA_TYPE})
                    self._check(resp, "storing the manifest on", ok=(201,))
        except httpx.HTTPError as exc:
            raise self._translate(f"{type(exc).__name__}: connection refused or timed out ({exc})",
                                  during="pushing to") from exc
        held = resp.headers.get("docker-content-digest")
        if held and held != layout.digest:
            raise ProviderError(f"{self.cloud}: {self.host} stored the manifest as {held[:19]}…, "
                                f"not {layout.digest[:19]}…", cloud=self.cloud, hint="see the registry's log")
        return PushedImage(self.cloud, self.repository_for(name), tag, layout.digest, sent, kept,
                           round(time.perf_counter() - started, 2), sent_bytes)


def _file_chunks(fh: Any, size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := fh.read(size):
        yield chunk


def registry_for(cloud: str, cfg: RegistryConfig, *, base_dir: Path | None = None) -> OCIRegistry:
    """The registry for one cloud's config. ``base_dir`` resolves a relative ``password_file``."""
    return OCIRegistry(cloud, cfg, base_dir=base_dir)
