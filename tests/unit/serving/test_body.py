"""The request body parser: limits checked before parsing, and a bounded property test that
whatever bytes a client sends, the parser either returns what ``json.loads`` would or raises
``BadBody`` (a 422) — never anything else, which the server would turn into a 500."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.serving.body import BadBody, BodyLimits, check_limits, parse_json

LIMITS = BodyLimits(max_depth=8, max_number_digits=20)


@pytest.mark.parametrize(("raw", "fragment"), [
    (b"[" * 9 + b"]" * 9, "9 levels deep"),
    (b'{"a": ' * 9 + b"1" + b"}" * 9, "9 levels deep"),
    (b"1" * 21, "more than 20 digits"),
    (b"[1e" + b"5" * 21 + b"]", "more than 20 digits"),
    (b"\xff", "not UTF-8"),
    (b"[NaN]", "NaN is not a finite number"),
    (b"[-Infinity]", "-Infinity is not a finite number"),
    (b"{", "not valid JSON"),
])
def test_limits_and_mistakes_are_bad_bodies(raw, fragment):
    with pytest.raises(BadBody, match=fragment):
        parse_json(raw, LIMITS)


def test_at_the_limits_it_parses():
    assert parse_json(b"[" * 8 + b"]" * 8, LIMITS) == [[[[[[[[]]]]]]]]
    # orjson gives an integer beyond 64 bits as the nearest float (a feature is a float32 anyway)
    assert parse_json(b"[" + b"9" * 20 + b"]", LIMITS) == [float("9" * 20)]
    # brackets and digits inside strings, escaped quotes included, are text
    text = json.dumps(["[" * 50 + '\\"' + "1" * 50 + "{" * 50])
    assert parse_json(text.encode(), LIMITS) == json.loads(text)


def test_an_unterminated_string_is_checked_in_linear_time():
    raw = b'["' + b"a\\" * 200_000  # would backtrack exponentially with a naive string pattern
    with pytest.raises(BadBody):
        parse_json(raw, LIMITS)


def test_the_default_limits_admit_a_large_predict_body():
    body = json.dumps({"instances": [[0.123456789] * 64] * 4096}).encode()
    check_limits(body, BodyLimits())


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=40,
)


def _same(ours, reference) -> bool:
    """Equal as JSON values, except that an integer beyond 64 bits is the nearest float (orjson)."""
    if isinstance(reference, int) and not isinstance(reference, bool) and not -(2**63) <= reference < 2**64:
        return isinstance(ours, float) and ours == float(reference)
    if isinstance(reference, list):
        return isinstance(ours, list) and len(ours) == len(reference) and all(map(_same, ours, reference))
    if isinstance(reference, dict):
        return isinstance(ours, dict) and ours.keys() == reference.keys() and all(
            _same(ours[k], reference[k]) for k in reference)
    return type(ours) is type(reference) and ours == reference


def _parses_or_refuses(raw: bytes) -> None:
    try:
        value = parse_json(raw, LIMITS)
    except BadBody:
        return
    assert _same(value, json.loads(raw))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json_values)
def test_valid_json_parses_the_same_or_is_refused_by_a_limit(value):
    raw = json.dumps(value).encode()
    try:
        assert _same(parse_json(raw, LIMITS), json.loads(raw))
    except BadBody as exc:
        # orjson also refuses a lone surrogate escape (not Unicode), which json accepts
        assert "levels deep" in str(exc) or "digits" in str(exc) or "surrogate" in str(exc)


_fragments = st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"\\", b",", b":", b"1", b"9" * 30, b"e", b"-",
                              b".", b"NaN", b"true", b"null", b" ", b"\xff", b"\xc3\xa9", b'"k"'])


@settings(max_examples=500, deadline=None)
@given(st.lists(_fragments, max_size=60).map(b"".join) | st.binary(max_size=200))
def test_any_bytes_parse_or_raise_bad_body(raw):
    _parses_or_refuses(raw)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=9, max_value=3000), st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
def test_any_depth_beyond_the_limit_is_refused(depth, pair):
    opener, closer = pair
    with pytest.raises(BadBody, match="levels deep"):
        parse_json(opener * depth + b"0" + closer * depth, LIMITS)
