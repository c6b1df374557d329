"""Tables people bring: read a CSV (or Parquet), infer column types, look at the data.

A ``Table`` keeps every cell as read (text, or a Python value from Parquet) with ``None``
for a missing cell, so type inference, the data look and the model's input arrays all
start from the same values. Every refusal names the file, the column or the row, and the fix.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from orchestrator.errors import MissingExtraError, ModelError

__all__ = [
    "MISSING_TOKENS",
    "ColumnType",
    "DataLook",
    "LabelledTable",
    "Table",
    "as_text",
    "check_trainable",
    "column_array",
    "infer_types",
    "label_values",
    "look_at",
    "read_table",
    "split_labels",
]

ColumnType = Literal["float32", "float64", "int64", "string"]
# Cells that mean "no value" in the CSVs people export (spreadsheets, pandas, R).
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})
# An imbalance ratio (largest class / smallest) from which the card recommends class weights.
IMBALANCE_NOTE_RATIO = 3.0
_SHOWN_ROWS = 10


@dataclass(frozen=True)
class Table:
    """Columns of raw cells. ``row_numbers`` are the file's line numbers (header = 1)."""

    path: Path
    columns: list[str]
    cells: dict[str, list[Any]]
    row_numbers: list[int]

    @property
    def n_rows(self) -> int:
        return len(self.row_numbers)

    def take(self, rows: list[int] | np.ndarray) -> Table:
        idx = [int(i) for i in rows]
        return Table(self.path, list(self.columns), {c: [v[i] for i in idx] for c, v in self.cells.items()},
                     [self.row_numbers[i] for i in idx])

    def without(self, names: list[str]) -> Table:
        keep = [c for c in self.columns if c not in names]
        return Table(self.path, keep, {c: self.cells[c] for c in keep}, list(self.row_numbers))


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in MISSING_TOKENS


def read_table(path: Path) -> Table:
    """Read ``path`` (CSV, or Parquet by its suffix). Missing cells become ``None``."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"data file {path} does not exist", hint="check the --data path")
    if path.suffix.lower() in (".parquet", ".pq"):
        return _read_parquet(path)
    return _read_csv(path)


def _read_csv(path: Path) -> Table:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ModelError(
            f"{path} is not UTF-8: byte 0x{raw[exc.start]:02x} at line {line} cannot be decoded",
            hint=f"save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 {path} > {path.stem}.utf8.csv`",
        ) from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()  # trailing blank lines
    if not rows:
        raise ModelError(f"{path} is empty", hint="the CSV needs a header row and data rows")
    header = [h.strip() for h in rows[0]]
    _check_header(path, header)
    cells: dict[str, list[Any]] = {h: [] for h in header}
    numbers: list[int] = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise ModelError(f"{path}:{line_no} has {len(row)} fields, the header has {len(header)}",
                             hint="every row needs one field per column; quote fields that contain commas")
        for name, cell in zip(header, row):
            cells[name].append(None if _is_missing(cell) else cell.strip())
        numbers.append(line_no)
    if not numbers:
        raise ModelError(f"{path} has a header but no data rows", hint="add rows below the header")
    return Table(path, header, cells, numbers)


def _read_parquet(path: Path) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingExtraError("pyarrow", "parquet", purpose="reading Parquet files") from exc
    try:
        data = pq.read_table(path).to_pydict()
    except Exception as exc:  # pyarrow raises its own ArrowInvalid/OSError family
        raise ModelError(f"{path} cannot be read as Parquet: {exc}", hint="check the file, or export it as CSV") from exc
    header = [str(c) for c in data]
    _check_header(path, header)
    cells = {str(name): [None if _is_missing(v) else v for v in values] for name, values in data.items()}
    n = len(next(iter(cells.values()), []))
    # Parquet has no line numbers; row k is reported as k + 2 like a CSV with a header
    return Table(path, header, cells, list(range(2, n + 2)))


def _check_header(path: Path, header: list[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(header, start=1):
        if not name:
            raise ModelError(f"{path}: column {i} has no name", hint="give every column a name in the header row")
        if name in seen:
            raise ModelError(f"{path}: column '{name}' appears twice in the header", hint="rename one of them")
        seen.add(name)


def _as_float(value: Any) -> float | None:
    """A cell as a number, or None when it is not one (bool is not a number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def infer_types(table: Table, *, categorical: list[str] = (), numeric: list[str] = (),  # type: ignore[assignment]
                fixed: dict[str, ColumnType] | None = None) -> dict[str, ColumnType]:
    """``float32`` when every present cell is a number, else ``string``; overrides win."""
    for name in [*categorical, *numeric, *(fixed or {})]:
        if name not in table.columns:
            raise ModelError(f"{table.path} has no column '{name}' (columns: {', '.join(table.columns)})",
                             hint="check the column names given to --categorical, --numeric or --drop")
    types: dict[str, ColumnType] = {}
    for name in table.columns:
        if fixed and name in fixed:
            types[name] = fixed[name]
        elif name in categorical:
            types[name] = "string"
        elif name in numeric:
            types[name] = "float32"
        else:
            present = [v for v in table.cells[name] if v is not None]
            types[name] = "float32" if present and all(_as_float(v) is not None for v in present) else "string"
    return types


def column_array(table: Table, name: str, kind: str) -> np.ndarray:
    """One column as the model reads it: numbers with NaN for missing, or text with '' for missing."""
    values = table.cells[name]
    if kind == "string":
        return np.array(["" if v is None else as_text(v) for v in values], dtype=object)
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if v is None:
            if kind == "int64":
                raise ModelError(f"{table.path}:{table.row_numbers[i]} column '{name}' is missing; "
                                 "the model's integer input has no missing value", hint="fill in the cell")
            out[i] = np.nan
            continue
        number = _as_float(v)
        if number is None:
            raise ModelError(f"{table.path}:{table.row_numbers[i]} column '{name}' is {v!r}, not a number",
                             hint=f"fix the cell, or treat the column as categorical with --categorical {name}")
        limit = float(np.finfo(np.float32).max) if kind == "float32" else float(np.finfo(np.float64).max)
        if not math.isfinite(number) or abs(number) > limit:
            raise ModelError(f"{table.path}:{table.row_numbers[i]} column '{name}' is {v!r}, which is not a finite "
                             f"{kind}", hint="fix or remove the row")
        out[i] = number
    return out.astype(np.dtype(kind))


def as_text(value: Any) -> str:
    # A Parquet integer 7 and the CSV text "7" are the same category.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class LabelledTable:
    features: Table
    labels: np.ndarray
    classes: list[Any]
    label_column: str
    dropped: list[dict[str, Any]] = field(default_factory=list)
    n_read: int = 0


def label_values(values: list[Any]) -> tuple[list[Any], list[Any]]:
    """Labels as int when every one is an integer, else as text; returns (labels, sorted classes)."""
    numbers = [_as_float(v) for v in values]
    if all(n is not None and n.is_integer() for n in numbers):
        labels: list[Any] = [int(n) for n in numbers if n is not None]
    else:
        labels = [as_text(v) for v in values]
    return labels, sorted(set(labels))


def split_labels(table: Table, label_column: str) -> LabelledTable:
    """Separate the label column; rows without a label are dropped and recorded."""
    if label_column not in table.cells:
        raise ModelError(f"{table.path} has no label column '{label_column}' (columns: {', '.join(table.columns)})",
                         hint="name the column that holds the class with --label-column")
    raw = table.cells[label_column]
    keep = [i for i, v in enumerate(raw) if v is not None]
    dropped = []
    if len(keep) < len(raw):
        lines = [table.row_numbers[i] for i, v in enumerate(raw) if v is None]
        dropped.append({"reason": f"label '{label_column}' is missing", "count": len(lines),
                        "rows": lines[:_SHOWN_ROWS]})
    features = table.without([label_column]).take(keep)
    if not features.columns:
        raise ModelError(f"{table.path} has only the label column '{label_column}'", hint="add feature columns")
    if not keep:
        raise ModelError(f"{table.path}: every row's label '{label_column}' is missing", hint="fill in the labels")
    labels, classes = label_values([raw[i] for i in keep])
    return LabelledTable(features, np.asarray(labels), classes, label_column, dropped, table.n_rows)


def check_trainable(data: LabelledTable, types: dict[str, ColumnType], *, max_levels: int) -> None:
    """Refuse what no classifier can learn from, naming the column and the fix."""
    path = data.features.path
    if len(data.classes) < 2:
        raise ModelError(
            f"{path}: the label '{data.label_column}' has one class ({data.classes[0]!r}) in all "
            f"{len(data.labels)} labelled rows; a classifier needs at least two",
            hint="add rows of the other classes, or check that --label-column names the class column")
    for name in data.features.columns:
        if all(v is None for v in data.features.cells[name]):
            raise ModelError(f"{path}: column '{name}' is missing in every row",
                             hint=f"fill it in, or leave it out with --drop {name}")
        if types[name] == "string":
            levels = len({as_text(v) for v in data.features.cells[name] if v is not None})
            if levels > max_levels:
                raise ModelError(
                    f"{path}: categorical column '{name}' has {levels} distinct values (at most {max_levels}); "
                    "one-hot encoding it would make a column per value and learn nothing general",
                    hint=f"leave it out with --drop {name} (an identifier?), group rare values first, "
                         f"or raise --max-levels")


@dataclass(frozen=True)
class DataLook:
    """What the card and the report say about the data before any model."""

    n_rows_read: int
    n_rows_used: int
    rows_dropped: list[dict[str, Any]]
    class_counts: dict[str, int]
    imbalance_ratio: float
    imbalance_note: str | None
    missing: dict[str, int]
    column_types: dict[str, str]

    def as_card(self) -> dict[str, Any]:
        return {
            "n_rows_read": self.n_rows_read, "n_rows_used": self.n_rows_used, "rows_dropped": self.rows_dropped,
            "class_counts": self.class_counts, "imbalance_ratio": self.imbalance_ratio,
            "imbalance_note": self.imbalance_note, "missing_values": self.missing, "column_types": self.column_types,
        }


def look_at(data: LabelledTable, types: dict[str, ColumnType], *, class_weight: bool) -> DataLook:
    counts = Counter(data.labels.tolist())
    class_counts = {str(c): int(counts[c]) for c in data.classes}
    ratio = max(counts.values()) / min(counts.values())
    note = None
    if ratio >= IMBALANCE_NOTE_RATIO:
        largest = max(class_counts, key=lambda k: class_counts[k])
        smallest = min(class_counts, key=lambda k: class_counts[k])
        note = (f"classes are imbalanced: '{largest}' has {ratio:.1f}x the rows of '{smallest}'; "
                + ("class weights are on (--class-weight)" if class_weight
                   else "consider --class-weight so the rare classes count in training"))
    missing = {c: sum(v is None for v in data.features.cells[c]) for c in data.features.columns}
    return DataLook(data.n_read, len(data.labels), list(data.dropped), class_counts, round(ratio, 4), note,
                    missing, dict(types))
