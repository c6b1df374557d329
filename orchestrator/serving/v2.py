"""The Open Inference Protocol ("V2", as KServe, Triton and MLServer speak it) over REST.

    GET  /v2                              server metadata
    GET  /v2/health/live                  {"live": true}
    GET  /v2/health/ready                 {"ready": true}: the model is loaded and verified
    GET  /v2/models/{name}[/versions/{v}]        model metadata, from the card
    GET  /v2/models/{name}[/versions/{v}]/ready  {"name", "ready": true}
    POST /v2/models/{name}[/versions/{v}]/infer  tensors in, labels and probabilities out

One model per server, named as its card names it. A tensor model (one ``[N, F]`` input) takes
one input tensor of shape ``[N, F]``; a table model takes one tensor per column, named as the
column, of shape ``[N]`` or ``[N, 1]``. Numbers come as FP32, FP64 or INT64 (string columns as
BYTES), ``data`` flat in row-major order or nested. The answer has two outputs: ``label``
(``[N]``; INT64, or BYTES for string classes) and ``probabilities`` (``[N, classes]``, FP64,
rounded to 6 decimals like ``/v1/predict``); ``outputs`` in the request may pick either.

Errors are the protocol's ``{"error": "..."}``: 400 for a request the model cannot take, 404 for
a model this server does not serve, 413 for a body over the limit; never a 500 for a client
mistake. Not supported: the binary tensor data extension (a request with
``Inference-Header-Content-Length`` is refused with 400), and the gRPC protocol.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.model.schema import InputSchema

__all__ = ["V2Error", "decode_inputs", "infer_answer", "model_metadata", "numbers_only", "select_outputs"]

# The protocol's datatypes that mco takes, and the numpy kinds their JSON values may have.
_NUMERIC_KINDS = {"FP32": "iuf", "FP64": "iuf", "INT64": "iu"}
_NUMPY_DATATYPE = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "string": "BYTES"}
OUTPUTS = ("label", "probabilities")


class V2Error(Exception):
    """A request the protocol refuses: ``status`` (400 or 404) and the message for ``{"error": ...}``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class _Tensor:
    name: str
    shape: list[int]
    datatype: str
    data: Any


def _tensor(raw: Any, i: int) -> _Tensor:
    if not isinstance(raw, dict):
        raise V2Error(f"inputs[{i}] is not an object with name, shape, datatype and data")
    name = raw.get("name")
    if not isinstance(name, str):
        raise V2Error(f"inputs[{i}] has no name")
    shape = raw.get("shape")
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise V2Error(f"input '{name}': shape must be a list of non-negative integers, not {shape!r}"[:300])
    datatype = raw.get("datatype")
    if not isinstance(datatype, str):
        raise V2Error(f"input '{name}' has no datatype")
    if "data" not in raw:
        raise V2Error(f"input '{name}' has no data (the binary tensor extension is not supported)")
    return _Tensor(name, shape, datatype, raw["data"])


def _elements(shape: list[int]) -> int:
    return math.prod(shape)


def numbers_only(raw: bytes, payload: Any) -> bool:
    """True when no tensor's ``data`` can hold a string, a boolean or a null.

    Every quote in the body then belongs to a string outside the data (names, datatypes...),
    so counting them settles it without looking at each value; the data can be converted
    straight to float32 (numpy would otherwise read "1.5" as a number)."""
    if b"true" in raw or b"false" in raw or b"null" in raw or b"\\" in raw:
        return False
    return raw.count(b'"') == 2 * _strings_outside_data(payload)


def _strings_outside_data(value: Any, *, key: str = "") -> int:
    if key == "data":
        return 0
    if isinstance(value, str):
        return 1
    if isinstance(value, dict):
        return len(value) + sum(_strings_outside_data(v, key=k) for k, v in value.items())
    if isinstance(value, list):
        return sum(_strings_outside_data(v) for v in value)
    return 0


def _numbers(t: _Tensor, allowed: tuple[str, ...], *, plain: bool = False) -> np.ndarray:
    """``t``'s data as a numpy array of its shape, checked against its datatype.

    ``plain`` (see ``numbers_only``): the data holds only numbers and lists, so FP32 and FP64
    go straight to float32 in one conversion."""
    if t.datatype not in allowed:
        raise V2Error(f"input '{t.name}' has datatype {t.datatype}; this model takes {', '.join(allowed)}")
    if not isinstance(t.data, list):
        raise V2Error(f"input '{t.name}': data must be a list")
    if plain and t.datatype != "INT64":
        try:
            arr = np.array(t.data, dtype=np.float32)
        except (ValueError, TypeError):
            arr = None  # ragged: the general path below says so
        if arr is not None and arr.size == _elements(t.shape):
            return arr.reshape(t.shape)  # finiteness is checked by the caller, on float32
    try:
        arr = np.asarray(t.data)
    except (ValueError, TypeError):
        raise V2Error(f"input '{t.name}': data is ragged; it must be flat or nested to its shape") from None
    # numpy reads [true, 2] as integers: a boolean hides among numbers unless looked for
    if arr.dtype.kind not in _NUMERIC_KINDS[t.datatype] or (not plain and _has_bool(t.data)):
        what = "integers" if t.datatype == "INT64" else "numbers"
        raise V2Error(f"input '{t.name}' is {t.datatype} but its data holds values that are not {what}")
    want = _elements(t.shape)
    if arr.size != want:
        raise V2Error(f"input '{t.name}' has {arr.size} elements; its shape {t.shape} needs {want}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise V2Error(f"input '{t.name}' holds a value that is not finite")
    return arr.reshape(t.shape)


def _has_bool(data: list[Any]) -> bool:
    stack = [data]
    while stack:
        for v in stack.pop():
            if v is True or v is False:
                return True
            if isinstance(v, list):
                stack.append(v)
    return False


def decode_inputs(payload: Any, schema: InputSchema, n_features: int, max_instances: int,
                  *, plain: bool = False) -> np.ndarray | dict[str, np.ndarray]:
    """The ONNX feed(s) for an infer request body, or ``V2Error`` naming what is wrong.

    ``plain``: ``numbers_only`` holds for the body (a faster conversion; same answers)."""
    if not isinstance(payload, dict):
        raise V2Error('the body must be a JSON object with an "inputs" list')
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise V2Error('"inputs" must be a non-empty list of tensors')
    tensors = [_tensor(raw, i) for i, raw in enumerate(inputs)]
    if schema.layout == "columns":
        return _column_feeds(tensors, schema, max_instances)
    if len(tensors) != 1:
        raise V2Error(f"this model takes one input tensor of shape [N, {n_features}]; got {len(tensors)}")
    t = tensors[0]
    if len(t.shape) != 2 or t.shape[1] != n_features or t.shape[0] < 1:
        raise V2Error(f"input '{t.name}' has shape {t.shape}; this model takes [N, {n_features}] with N >= 1")
    if t.shape[0] > max_instances:
        raise V2Error(f"input '{t.name}' has {t.shape[0]} rows; at most {max_instances} per request")
    arr = _numbers(t, ("FP32", "FP64", "INT64"), plain=plain and schema.tensor_dtype == "float32")
    if schema.tensor_dtype == "float32":
        X = arr.astype(np.float32, copy=False)
        if not np.all(np.isfinite(X)):
            raise V2Error(f"input '{t.name}' holds a value that overflows float32")
        return X
    try:  # a float64 or int64 tensor model: the schema converts and checks each value
        return schema.feeds_from_rows(arr.tolist())
    except ValueError as exc:
        raise V2Error(str(exc)) from None


def _column_feeds(tensors: list[_Tensor], schema: InputSchema, max_instances: int) -> dict[str, np.ndarray]:
    by_name = {t.name: t for t in tensors}
    missing = [c.name for c in schema.columns if c.name not in by_name]
    if missing:
        raise V2Error(f"missing input tensor(s) {', '.join(missing)}: this model takes one tensor per column "
                      f"({', '.join(schema.names)})")
    unknown = sorted(set(by_name) - set(schema.names))
    if unknown:
        raise V2Error(f"unknown input tensor(s) {', '.join(unknown)}; the columns are {', '.join(schema.names)}")
    rows = 0
    columns: list[list[Any]] = []
    for c in schema.columns:
        t = by_name[c.name]
        if not (len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[1] == 1)) or t.shape[0] < 1:
            raise V2Error(f"input '{t.name}' has shape {t.shape}; a column takes [N] or [N, 1] with N >= 1")
        if rows and t.shape[0] != rows:
            raise V2Error(f"input '{t.name}' has {t.shape[0]} rows; the other columns have {rows}")
        rows = t.shape[0]
        if rows > max_instances:
            raise V2Error(f"input '{t.name}' has {rows} rows; at most {max_instances} per request")
        if c.type == "string":
            if t.datatype != "BYTES":
                raise V2Error(f"input '{t.name}' has datatype {t.datatype}; the column is a string: BYTES")
            flat = t.data[0] if isinstance(t.data, list) and len(t.data) == 1 and isinstance(t.data[0], list) \
                else t.data
            if not isinstance(flat, list) or len(flat) != rows:
                n = len(flat) if isinstance(flat, list) else 0
                raise V2Error(f"input '{t.name}' has {n} elements; its shape {t.shape} needs {rows}")
            if not all(v is None or isinstance(v, str) for v in flat):
                raise V2Error(f"input '{t.name}' is BYTES but holds values that are not strings")
            columns.append(flat)
        else:
            columns.append(_numbers(t, ("FP32", "FP64", "INT64")).reshape(-1).tolist())
    table = [list(row) for row in zip(*columns)]
    try:
        return schema.feeds_from_rows(table)
    except ValueError as exc:
        raise V2Error(str(exc)) from None


def select_outputs(payload: dict[str, Any]) -> tuple[str, ...]:
    wanted = payload.get("outputs")
    if wanted is None:
        return OUTPUTS
    if not isinstance(wanted, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in wanted):
        raise V2Error('"outputs" must be a list of objects with a name')
    names = tuple(o["name"] for o in wanted)
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise V2Error(f"unknown output(s) {', '.join(unknown)}; this model has {', '.join(OUTPUTS)}")
    return names


def infer_answer(*, model_name: str, model_version: str, request_id: Any, outputs: tuple[str, ...],
                 labels: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    answer: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if isinstance(request_id, str):
        answer["id"] = request_id
    tensors = []
    for name in outputs:
        if name == "label":
            label_type = "BYTES" if labels.dtype.kind in "OUS" else "INT64"
            tensors.append({"name": "label", "shape": [len(labels)], "datatype": label_type,
                            "data": labels.tolist()})
        else:
            tensors.append({"name": "probabilities", "shape": list(proba.shape), "datatype": "FP64",
                            "data": np.round(proba.astype(np.float64), 6).reshape(-1)})
    answer["outputs"] = tensors
    return answer


def model_metadata(card: dict[str, Any], schema: InputSchema, n_features: int) -> dict[str, Any]:
    """``GET /v2/models/{name}``: name, versions, platform and tensors, from the model card."""
    if schema.layout == "columns":
        inputs = [{"name": c.name, "datatype": _NUMPY_DATATYPE.get(c.type, "FP32"), "shape": [-1, 1]}
                  for c in schema.columns]
    else:
        inputs = [{"name": schema.tensor_input or "input", "datatype": _NUMPY_DATATYPE.get(schema.tensor_dtype, "FP32"),
                   "shape": [-1, n_features]}]
    classes = list(card["classes"])
    label_type = "BYTES" if any(isinstance(c, str) for c in classes) else "INT64"
    return {
        "name": str(card["name"]),
        "versions": [str(card.get("version", "1"))],
        "platform": "onnxruntime_onnx",
        "inputs": inputs,
        "outputs": [{"name": "label", "datatype": label_type, "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(classes)]}],
        "parameters": {"bundle_digest": str(card.get("bundle_digest", "")),
                       "classes": [str(c) for c in classes],
                       "feature_names": list(card["input_schema"].get("feature_names") or [])},
    }
