"""Hostile and careless clients against a real ``mco serve`` process on loopback.

A client mistake is a 4xx, never a 500: the router retries 5xx on the next cloud and counts
them toward ejection, so a body that makes one server fail would take out every cloud in turn."""

from __future__ import annotations

import json

import pytest

from tests.integration.serving.test_model_server import served

ROW = ", ".join(["0"] * 63)


@pytest.fixture(scope="module")
def server(digits_bundle):
    with served(digits_bundle.path) as client:
        yield client


POISON = {
    "integer 10**400": ('{"instances": [[1' + "0" * 400 + ", " + ROW + "]]}", "digits"),
    "5000-digit integer": ('{"instances": [[' + "7" * 5000 + ", " + ROW + "]]}", "digits"),
    "5000-digit exponent": ('{"instances": [[1e' + "9" * 5000 + ", " + ROW + "]]}", "digits"),
    "arrays 2000 deep": ('{"instances": ' + "[" * 2000 + "]" * 2000 + "}", "levels deep"),
    "objects 2000 deep": ('{"instances": [[' + '{"a": ' * 2000 + "1" + "}" * 2000 + "]]}", "levels deep"),
    "a deep row among good rows": ('{"instances": [[' + ROW + ", 0], " + "[" * 3000 + "]" * 3000 + "]}",
                                   "levels deep"),
}


@pytest.mark.parametrize("name", list(POISON))
def test_a_query_of_death_is_a_422_and_the_server_keeps_serving(server, name):
    body, fragment = POISON[name]
    resp = server.post("/v1/predict", content=body.encode(), headers={"content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert fragment in resp.json()["error"]
    assert server.post("/v1/predict", json={"instances": [[0] * 64]}).status_code == 200


def test_brackets_and_digits_inside_strings_do_not_count(server):
    # A string full of brackets and digits is not nesting and not a number: it is the usual
    # "not a number" mistake, answered with the row and feature.
    row = ["[" * 500 + "9" * 500] + [0] * 63
    resp = server.post("/v1/predict", content=json.dumps({"instances": [row]}).encode())
    assert resp.status_code == 422 and "instance 0, feature 0" in resp.json()["error"]


def test_the_largest_accepted_numbers_still_parse(server):
    # 100 digits is within the limit: 10**99 overflows float32, a clear 422 rather than a 500.
    resp = server.post("/v1/predict", content=('{"instances": [[1' + "0" * 99 + ", " + ROW + "]]}").encode())
    assert resp.status_code == 422 and "float32" in resp.json()["error"]
    resp = server.post("/v1/predict", content=('{"instances": [[0.' + "0" * 98 + "1, " + ROW + "]]}").encode())
    assert resp.status_code == 200
