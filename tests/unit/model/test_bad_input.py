"""Every bad input gets a message naming the column or row and the fix: exit code 1, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MCO = [sys.executable, "-m", "orchestrator.cli.main"]


def _write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.write_text("\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n")
    return path


def _train(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MCO, "model", "train", "--data", str(data), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=300)


def _assert_refused(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    text = " ".join(proc.stderr.split())  # the console wraps long lines
    for fragment in fragments:
        assert fragment in text, proc.stderr
    assert "fix:" in proc.stderr, "every refusal says how to fix it"


def _rows(n: int, classes: list[str]) -> list[list[object]]:
    return [[i % 7, ["a", "b"][i % 2], classes[i % len(classes)]] for i in range(n)]


def test_no_label_column(tmp_path):
    data = _write(tmp_path / "d.csv", ["x", "colour", "y"], _rows(40, ["p", "q"]))
    proc = _train(data, tmp_path / "out", "--label-column", "target")
    _assert_refused(proc, "no label column 'target'", "x, colour, y", "--label-column")
    assert not (tmp_path / "out").exists()


def test_label_with_one_class(tmp_path):
    data = _write(tmp_path / "d.csv", ["x", "colour", "y"], _rows(40, ["only"]))
    _assert_refused(_train(data, tmp_path / "out", "--label-column", "y"), "'y' has one class ('only')")


def test_a_class_with_fewer_rows_than_folds(tmp_path):
    rows = _rows(60, ["p", "q"]) + [[1, "a", "rare"], [2, "b", "rare"], [3, "a", "rare"]]
    data = _write(tmp_path / "d.csv", ["x", "colour", "y"], rows)
    proc = _train(data, tmp_path / "out", "--label-column", "y", "--cv", "5")
    _assert_refused(proc, "class 'rare'", "has 3 rows", "5-fold", "--cv 2")


def test_a_column_entirely_missing(tmp_path):
    rows = [[i % 7, "", ["p", "q"][i % 2]] for i in range(40)]
    data = _write(tmp_path / "d.csv", ["x", "empty", "y"], rows)
    _assert_refused(_train(data, tmp_path / "out", "--label-column", "y"),
                    "column 'empty' is missing in every row", "--drop empty")


def test_a_categorical_column_with_10000_levels(tmp_path):
    rows = [[i % 7, f"user-{i}", ["p", "q"][i % 2]] for i in range(10_000)]
    data = _write(tmp_path / "d.csv", ["x", "user_id", "y"], rows)
    _assert_refused(_train(data, tmp_path / "out", "--label-column", "y"),
                    "'user_id' has 10000 distinct values", "--drop user_id")


def test_a_file_that_is_not_utf8(tmp_path):
    data = tmp_path / "latin1.csv"
    data.write_bytes("x,city,y\n1,Zürich,p\n2,Genève,q\n".encode("latin-1"))
    _assert_refused(_train(data, tmp_path / "out", "--label-column", "y"),
                    "is not UTF-8", "byte 0xfc at line 2", "iconv")


def test_a_non_numeric_cell_in_a_numeric_override(tmp_path):
    data = _write(tmp_path / "d.csv", ["x", "colour", "y"], _rows(40, ["p", "q"]))
    proc = _train(data, tmp_path / "out", "--label-column", "y", "--numeric", "colour")
    _assert_refused(proc, "d.csv:2 column 'colour' is 'a', not a number", "--categorical colour")


@pytest.mark.parametrize(("args", "fragment"), [
    (["--search", "gamma=1,2"], "'gamma' is not a parameter"),
    (["--search", "C=0.1..10"], "a grid needs a list"),
    (["--search", "C=0.1,1", "--search-metric", "f2"], "unknown search metric 'f2'"),
])
def test_bad_search_options(tmp_path, args, fragment):
    data = _write(tmp_path / "d.csv", ["x", "colour", "y"], _rows(60, ["p", "q"]))
    _assert_refused(_train(data, tmp_path / "out", "--label-column", "y", *args), fragment)
