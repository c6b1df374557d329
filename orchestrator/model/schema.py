"""A bundle's input schema: what one row is, and how rows become the ONNX model's inputs.

Two layouts, both recorded in the card's ``input_schema``:

- ``tensor`` (the reference models, and imported models with one input): every feature
  goes into one ``[N, F]`` tensor, in ``feature_names`` order;
- ``columns`` (models trained on a table): one ``[N, 1]`` input per column, numbers or
  text, so the ONNX graph itself imputes, encodes and scales.

Rows arrive as lists (schema order) or as objects naming each column. Light on purpose
(numpy only): the model server imports it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.model.table import Table, column_array

__all__ = ["InputColumn", "InputSchema", "RowError"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


class RowError(ValueError):
    """A request row does not fit the schema; the message names the row and column."""


@dataclass(frozen=True)
class InputColumn:
    name: str
    type: str  # float32, float64, int64 or string
    input: str  # the ONNX input it feeds (layout "columns")

    def as_card(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "input": self.input}


@dataclass(frozen=True)
class InputSchema:
    columns: tuple[InputColumn, ...]
    layout: str  # "tensor" or "columns"
    tensor_input: str = ""
    tensor_dtype: str = "float32"

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @classmethod
    def from_card(cls, card: dict[str, Any], *, input_name: str | None = None) -> InputSchema:
        schema = card["input_schema"]
        if schema.get("layout") == "columns":
            cols = tuple(InputColumn(str(c["name"]), str(c["type"]), str(c.get("input", c["name"])))
                         for c in schema["columns"])
            return cls(cols, "columns")
        n = int(schema["n_features"])
        names = [str(x) for x in schema.get("feature_names") or [f"f{i}" for i in range(n)]]
        dtype = str(schema.get("dtype", "float32"))
        tensor_input = input_name or str(card.get("model", {}).get("input_name", ""))
        return cls(tuple(InputColumn(name, dtype, tensor_input) for name in names), "tensor", tensor_input, dtype)

    def card_fields(self) -> dict[str, Any]:
        """The card's ``input_schema``: name and type per column, plus what older readers expect."""
        fields: dict[str, Any] = {"n_features": len(self.columns), "feature_names": self.names}
        if self.layout == "columns":
            fields.update(dtype="mixed" if len({c.type for c in self.columns}) > 1 else self.columns[0].type,
                          layout="columns", columns=[c.as_card() for c in self.columns])
        else:
            fields.update(dtype=self.tensor_dtype, layout="tensor",
                          columns=[{"name": c.name, "type": c.type} for c in self.columns])
        return fields

    # ---- rows from a request -------------------------------------------------------

    def feeds_from_rows(self, rows: list[Any]) -> dict[str, np.ndarray]:
        """Rows as lists (schema order) or objects (by column name) -> ONNX inputs."""
        n_cols = len(self.columns)
        index = {c.name: j for j, c in enumerate(self.columns)}
        table: list[list[Any]] = []
        for i, row in enumerate(rows):
            if isinstance(row, dict):
                for key in row:
                    if key not in index:
                        raise RowError(f"instance {i} has an unknown column {json.dumps(key)}; "
                                       f"the model's columns are: {', '.join(self.names)}")
                absent = [c.name for c in self.columns if c.name not in row]
                if absent:
                    raise RowError(f"instance {i} has no column {json.dumps(absent[0])}"
                                   + (f" (and {len(absent) - 1} more)" if len(absent) > 1 else "")
                                   + f"; the model's columns are: {', '.join(self.names)}")
                table.append([row[c.name] for c in self.columns])
            elif isinstance(row, list):
                if len(row) != n_cols:
                    raise RowError(f"instance {i} has {len(row)} features; the model expects {n_cols} "
                                   f"({', '.join(self.names[:8])}{'…' if n_cols > 8 else ''})")
                table.append(row)
            else:
                raise RowError(f"instance {i} is neither a list of values nor an object of named columns")
        allow_missing = self.layout == "columns"  # the graph imputes; a bare tensor model does not
        arrays = [self._column(j, [r[j] for r in table], allow_missing) for j in range(n_cols)]
        return self.feeds(arrays)

    def _column(self, j: int, values: list[Any], allow_missing: bool) -> np.ndarray:
        col = self.columns[j]
        if col.type == "string":
            out: list[str] = []
            for i, v in enumerate(values):
                if v is None and allow_missing:
                    out.append("")
                elif isinstance(v, str):
                    out.append(v)
                elif isinstance(v, int) and not isinstance(v, bool):
                    out.append(str(v))
                else:
                    raise RowError(f"instance {i}, column {json.dumps(col.name)} is {json.dumps(v)}, not text")
            return np.array(out, dtype=object)
        numbers = np.empty(len(values), dtype=np.float64)
        for i, v in enumerate(values):
            if v is None and allow_missing and col.type != "int64":
                numbers[i] = np.nan
                continue
            # bool is an int in Python; a feature is never true/false
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise RowError(f"instance {i}, column {json.dumps(col.name)} is {json.dumps(v)}, not a number")
            if not math.isfinite(v):
                raise RowError(f"instance {i}, column {json.dumps(col.name)} is not finite")
            if col.type == "float32" and abs(v) > _FLOAT32_MAX:
                raise RowError(f"instance {i}, column {json.dumps(col.name)} overflows float32")
            if col.type == "int64" and float(v) != int(v):
                raise RowError(f"instance {i}, column {json.dumps(col.name)} is {v}, not an integer")
            numbers[i] = v
        return numbers.astype(np.dtype(col.type))

    # ---- rows from a file ----------------------------------------------------------

    def feeds_from_table(self, table: Table) -> dict[str, np.ndarray]:
        """A table's columns (by name) -> ONNX inputs."""
        return self.feeds(self.arrays_from_table(table))

    def arrays_from_table(self, table: Table) -> list[np.ndarray]:
        """One array per schema column; an absent or extra column is named in the error."""
        from orchestrator.errors import ModelError

        absent = [n for n in self.names if n not in table.cells]
        if absent:
            raise ModelError(f"{table.path} has no column '{absent[0]}' that the model reads "
                             f"(it reads: {', '.join(self.names[:12])}{'…' if len(self.names) > 12 else ''})",
                             hint="the data needs every input column of the model, plus the label column")
        extra = [n for n in table.columns if n not in set(self.names)]
        if extra:
            raise ModelError(f"{table.path} has column '{extra[0]}', which the model does not read",
                             hint="remove it from the file, or check --label-column")
        return [column_array(table, c.name, c.type) for c in self.columns]

    def feeds(self, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        """One array per schema column -> the ONNX model's inputs."""
        if self.layout == "tensor":
            return {self.tensor_input: np.stack(arrays, axis=1).astype(np.dtype(self.tensor_dtype))}
        return {c.input: a.reshape(-1, 1) for c, a in zip(self.columns, arrays)}

