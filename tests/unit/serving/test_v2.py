"""The Open Inference Protocol decoder: whatever JSON a client sends, the answer is feeds or a
``V2Error`` (a 4xx), never another exception (a 500); and the fast conversion gives the same
feeds as the checked one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.model.schema import InputSchema
from orchestrator.serving.v2 import V2Error, decode_inputs, numbers_only, select_outputs

SCHEMA = InputSchema.from_card({"input_schema": {"n_features": 3, "dtype": "float32"}}, input_name="X")

_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=3)
_values = st.recursive(_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                       max_leaves=20)
_tensors = st.fixed_dictionaries({
    "name": st.sampled_from(["X", "x", ""]) | _values,
    "shape": st.lists(st.integers(-2, 5), max_size=3) | _values,
    "datatype": st.sampled_from(["FP32", "FP64", "INT64", "BOOL", "BYTES"]) | _values,
    "data": st.lists(st.integers(-5, 5) | st.floats(-1e40, 1e40, allow_nan=False) | _scalars, max_size=16) | _values,
})
_payloads = st.fixed_dictionaries({"inputs": st.lists(_tensors, max_size=2) | _values},
                                  optional={"outputs": _values, "id": _values}) | _values


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_payloads)
def test_any_payload_is_feeds_or_a_v2_error(payload):
    raw = json.dumps(payload).encode()
    for plain in (False, numbers_only(raw, payload)):
        try:
            X = decode_inputs(payload, SCHEMA, 3, 8, plain=plain)
        except V2Error as exc:
            assert exc.status == 400
            continue
        assert isinstance(X, np.ndarray) and X.dtype == np.float32 and X.shape[1] == 3
        assert np.all(np.isfinite(X))
    if isinstance(payload, dict):
        try:
            select_outputs(payload)
        except V2Error:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-100, 100), min_size=3, max_size=3),
                min_size=1, max_size=8), st.sampled_from(["FP32", "FP64"]), st.booleans())
def test_the_fast_conversion_equals_the_checked_one(rows, datatype, nested):
    data = rows if nested else [v for row in rows for v in row]
    payload = {"inputs": [{"name": "X", "shape": [len(rows), 3], "datatype": datatype, "data": data}]}
    raw = json.dumps(payload).encode()
    assert numbers_only(raw, payload)
    fast = decode_inputs(payload, SCHEMA, 3, 8, plain=True)
    checked = decode_inputs(payload, SCHEMA, 3, 8, plain=False)
    assert fast.dtype == checked.dtype == np.float32 and np.array_equal(fast, checked)


@pytest.mark.parametrize("data", [["1", 2, 3], [True, 2, 3], [None, 2, 3]])
def test_strings_booleans_and_nulls_are_never_plain(data):
    payload = {"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": data}]}
    assert not numbers_only(json.dumps(payload).encode(), payload)
    with pytest.raises(V2Error, match="not numbers"):
        decode_inputs(payload, SCHEMA, 3, 8, plain=False)
