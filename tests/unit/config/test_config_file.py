"""A config file that is not UTF-8, or gives a key twice, is refused with a message naming the
file (and line), as a JSON error with ``--output json``, never an internal error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config import load_config
from orchestrator.errors import ConfigError

MCO = [sys.executable, "-m", "orchestrator.cli.main"]


def _mco(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    return subprocess.run([*MCO, *args], capture_output=True, text=True, cwd=cwd, timeout=120, env=env, check=False)


def test_a_latin1_config_is_a_config_error(tmp_path):
    path = tmp_path / "mco.yaml"
    path.write_bytes("project:\n  name: café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text") as err:
        load_config(path)
    assert str(path) in err.value.message and "UTF-8" in (err.value.hint or "")


def test_a_duplicate_key_is_refused_naming_both_lines(tmp_path):
    path = tmp_path / "mco.yaml"
    path.write_text("project:\n  name: a\nrouter:\n  port: 8000\n  port: 9000\n")
    with pytest.raises(ConfigError, match=r"mco.yaml:5:3: duplicate key 'port' \(first given at line 4\)"):
        load_config(path)


def test_a_merge_key_may_be_overridden(tmp_path):
    path = tmp_path / "mco.yaml"
    path.write_text("x-defaults: &d {port: 8000, host: 127.0.0.1}\nrouter:\n  <<: *d\n  port: 9000\n")
    # the merge is not a duplicate (the unknown x-defaults key is what the schema then refuses, if anything)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        assert "duplicate" not in exc.message
    else:
        assert cfg.router.port == 9000


@pytest.mark.parametrize(("content", "said"), [
    ("project:\n  name: café\n".encode("latin-1"), "not UTF-8 text"),
    (b"project:\n  name: a\nproject:\n  name: b\n", "duplicate key 'project'"),
])
def test_the_cli_prints_a_json_error(tmp_path, content, said):
    (tmp_path / "mco.yaml").write_bytes(content)
    proc = _mco("history", "--config", "mco.yaml", "--output", "json", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["kind"] == "ConfigError" and said in payload["error"]
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
