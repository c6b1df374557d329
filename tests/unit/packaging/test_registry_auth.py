"""Registry auth adapters and error translation (no network: httpx's MockTransport for the token flow,
moto for ECR)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import httpx
import pytest

from orchestrator.config import RegistryConfig
from orchestrator.errors import AccessDenied, ConfigError, Unreachable
from orchestrator.providers.registry import OCIRegistry, RegistryCredentials, _RegistryAuth


def test_bearer_challenge_fetches_a_token_with_basic_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def token_endpoint(url: str, params: dict[str, str], headers: dict[str, str], **_: object) -> httpx.Response:
        seen.append(headers["Authorization"])
        assert params == {"service": "reg.example", "scope": "repository:mco/m:pull,push"}
        return httpx.Response(200, json={"token": "tok-123"})

    monkeypatch.setattr(httpx, "get", token_endpoint)

    def registry(request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") == "Bearer tok-123":
            return httpx.Response(200, json={"repositories": ["mco/m"]})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.example/token",'
                                            'service="reg.example",scope="repository:mco/m:pull,push"'})

    # auth.example is another host than the registry: trusted only because the config names it
    cfg = RegistryConfig(url="reg.example", token_realm_hosts=["auth.example"])
    auth = _RegistryAuth(RegistryCredentials("u", "p"), verify=True, cloud="aws", cfg=cfg)
    with httpx.Client(transport=httpx.MockTransport(registry), auth=auth) as client:
        assert client.get("https://reg.example/v2/_catalog").json() == {"repositories": ["mco/m"]}
    assert seen == ["Basic " + base64.b64encode(b"u:p").decode()]


def test_basic_credentials_from_env_win_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    secret.chmod(0o600)
    cfg = RegistryConfig(url="127.0.0.1:5000", auth="basic", username="mco", password_env="T_REG_PW",
                         password_file=secret)
    assert OCIRegistry("azure", cfg).credentials() == RegistryCredentials("mco", "from-file")
    monkeypatch.setenv("T_REG_PW", "from-env")
    assert OCIRegistry("azure", cfg).credentials() == RegistryCredentials("mco", "from-env")
    assert "from-env" not in repr(OCIRegistry("azure", cfg).credentials())


def test_basic_without_a_password_says_where_to_put_one() -> None:
    cfg = RegistryConfig(url="127.0.0.1:5000", auth="basic", username="mco", password_env="T_UNSET_PW")
    with pytest.raises(ConfigError, match="no password"):
        OCIRegistry("azure", cfg).credentials()


def test_translated_errors_never_carry_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_REG_PW", "hunter2-secret")
    reg = OCIRegistry("azure", RegistryConfig(url="r.example", auth="basic", username="u", password_env="T_REG_PW"))
    reg.credentials()
    err = reg._translate("unauthorized: bad login hunter2-secret", during="pushing to")
    assert isinstance(err, AccessDenied)
    assert "hunter2-secret" not in str(err) and "T_REG_PW" in (err.hint or "")
    down = reg._translate("dial tcp 127.0.0.1:1: connect: connection refused", during="pushing to")
    assert isinstance(down, Unreachable)


def test_ecr_login_token_comes_from_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    moto = pytest.importorskip("moto")
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with moto.mock_aws():
        cfg = RegistryConfig(url="123456789012.dkr.ecr.us-east-1.amazonaws.com", auth="ecr")
        creds = OCIRegistry("aws", cfg).credentials()
    assert creds is not None and creds.username == "AWS" and creds.password
    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
