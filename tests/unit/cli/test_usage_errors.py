"""Mistyped commands and options get click's short usage message and exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _mco(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).with_name("mco")), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.mark.parametrize(("args", "said"), [
    (("nope",), "No such command 'nope'"),
    (("config", "show"), "No such command 'show'"),
    (("deploy", "--nope"), "No such option: --nope"),
    (("drill", "run", "cloud-outage", "--rate", "fast"), "Invalid value for '--rate'"),
])
def test_usage_errors_exit_2_with_a_message(tmp_path: Path, args: tuple[str, ...], said: str) -> None:
    proc = _mco(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert said in proc.stderr
    assert "Traceback" not in proc.stderr and "Try 'mco" in proc.stderr
