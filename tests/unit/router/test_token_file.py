"""The router's token file is trusted only if its owner alone can read it and it is long enough,
by the same check as the registry password file (orchestrator/secret_files.py)."""

from __future__ import annotations

import pytest

from orchestrator.config import RouterConfig
from orchestrator.errors import ConfigError
from orchestrator.router.settings import ensure_token_file, read_token

GOOD = "k" * 43


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.delenv("MCO_ROUTER_TOKEN", raising=False)
    return RouterConfig(token_file=tmp_path / "tok")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_a_token_file_others_can_read_is_refused(cfg, tmp_path, mode):
    (tmp_path / "tok").write_text(GOOD)
    (tmp_path / "tok").chmod(mode)
    with pytest.raises(ConfigError, match=f"readable by others \\(mode {mode:o}\\)") as err:
        read_token(cfg)
    assert err.value.hint == f"chmod 600 {tmp_path / 'tok'}"
    with pytest.raises(ConfigError, match="readable by others"):
        ensure_token_file(tmp_path / "tok")


def test_a_short_token_is_refused(cfg, tmp_path):
    (tmp_path / "tok").write_text("short-token\n")
    (tmp_path / "tok").chmod(0o600)
    with pytest.raises(ConfigError, match="holds 11 bytes; at least 32"):
        read_token(cfg)


def test_a_good_token_file_is_read_and_a_new_one_is_good(cfg, tmp_path):
    (tmp_path / "tok").write_text(GOOD + "\n")
    (tmp_path / "tok").chmod(0o600)
    assert read_token(cfg) == GOOD
    made = ensure_token_file(tmp_path / "new" / "router.token")
    assert len(made) >= 32 and (tmp_path / "new" / "router.token").stat().st_mode & 0o777 == 0o600
    assert ensure_token_file(tmp_path / "new" / "router.token") == made
