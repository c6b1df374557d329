"""Upstream clients for the hot path: send one request to a target, read the whole answer.

Two interchangeable implementations, ``AiohttpUpstream`` (the default: see the README's
router benchmark, where it cost much less CPU per request than httpx's async client) and
``HttpxUpstream`` (the project's client). Both keep a pooled keep-alive connection per
target, never decompress or re-encode bodies, and raise ``UpstreamError`` with a
``kind``: ``connect`` (refused, unreachable), ``timeout`` (the per-try timeout),
``reset`` (the connection broke, including mid-response).

The whole response is read before anything is sent to the client. Predict answers are
small, and reading them fully is what allows a reset mid-response to be retried on
another cloud instead of reaching the client as a truncated body.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from orchestrator.router.asgi import Reply

if TYPE_CHECKING:
    import aiohttp
    import httpx

__all__ = ["HOP_BY_HOP", "AiohttpUpstream", "HttpxUpstream", "Upstream", "UpstreamError", "make_upstream"]

# RFC 9110 section 7.6.1: connection-specific fields a proxy must not forward
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
                        b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade"})


class UpstreamError(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class Upstream(Protocol):
    async def start(self) -> None: ...

    async def send(self, base_url: str, method: str, target: str, headers: list[tuple[str, str]],
                   body: bytes) -> Reply: ...

    async def close(self) -> None: ...


class AiohttpUpstream:
    def __init__(self, *, per_try_timeout_s: float, connect_timeout_s: float, max_connections: int = 256) -> None:
        self.per_try_timeout_s = per_try_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0, keepalive_timeout=15,
                                         ttl_dns_cache=60, enable_cleanup_closed=True)
        self._timeout = aiohttp.ClientTimeout(total=self.per_try_timeout_s, sock_connect=self.connect_timeout_s)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"))
        from yarl import URL

        self._url = URL
        self._errors = (aiohttp.ClientConnectorError, aiohttp.ServerTimeoutError, aiohttp.ClientError)
        self._connect_error = aiohttp.ClientConnectorError

    async def send(self, base_url: str, method: str, target: str, headers: list[tuple[str, str]],
                   body: bytes) -> Reply:
        session = self._session
        assert session is not None
        try:
            async with session.request(method, self._url(base_url + target, encoded=True), headers=headers,
                                       data=body or None, allow_redirects=False) as resp:
                payload = await resp.read()
                return resp.status, list(resp.raw_headers), payload
        except TimeoutError as exc:
            raise UpstreamError("timeout", "per-try timeout") from exc
        except self._connect_error as exc:
            # a connect that timed out is a timeout; refused/unreachable is a connect error
            kind = "timeout" if isinstance(exc.os_error, (TimeoutError, asyncio.TimeoutError)) else "connect"
            raise UpstreamError(kind, str(exc)) from exc
        except self._errors as exc:
            raise UpstreamError("reset", f"{type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            raise UpstreamError("reset", str(exc)) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class HttpxUpstream:
    def __init__(self, *, per_try_timeout_s: float, connect_timeout_s: float, max_connections: int = 256) -> None:
        self.per_try_timeout_s = per_try_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_connections = max_connections
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        import httpx

        self._httpx = httpx
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.per_try_timeout_s, connect=self.connect_timeout_s),
            limits=httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=self.max_connections),
            follow_redirects=False, trust_env=False)

    async def send(self, base_url: str, method: str, target: str, headers: list[tuple[str, str]],
                   body: bytes) -> Reply:
        httpx = self._httpx
        client = self._client
        assert client is not None
        try:
            # one deadline for the whole try; httpx's own timeouts are per read
            async with asyncio.timeout(self.per_try_timeout_s):
                request = client.build_request(method, base_url + target, headers=headers, content=body)
                resp = await client.send(request, stream=True)
                try:
                    payload = b"".join([chunk async for chunk in resp.aiter_raw()])
                finally:
                    await resp.aclose()
        except (TimeoutError, httpx.TimeoutException) as exc:
            if isinstance(exc, httpx.ConnectTimeout):
                raise UpstreamError("timeout", "connect timeout") from exc
            raise UpstreamError("timeout", "per-try timeout") from exc
        except httpx.ConnectError as exc:
            raise UpstreamError("connect", str(exc)) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError("reset", f"{type(exc).__name__}: {exc}") from exc
        return resp.status_code, list(resp.headers.raw), payload

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def make_upstream(kind: str, *, per_try_timeout_s: float, connect_timeout_s: float) -> Upstream:
    if kind == "httpx":
        return HttpxUpstream(per_try_timeout_s=per_try_timeout_s, connect_timeout_s=connect_timeout_s)
    if kind == "aiohttp":
        return AiohttpUpstream(per_try_timeout_s=per_try_timeout_s, connect_timeout_s=connect_timeout_s)
    raise ValueError(f"unknown upstream client {kind!r}: use aiohttp or httpx")
