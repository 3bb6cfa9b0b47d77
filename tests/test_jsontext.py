"""node/common/jsontext.py reads JSON text with orjson where it gives exactly what ``json.loads``
gives, and writes the JSON value ``json.dumps`` writes: compared here on arbitrary values and texts,
types included (an integer read as a float would be a different value), and on the inputs where the
two libraries differ."""

from __future__ import annotations

import json
import math
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.common import jsontext

scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**60, max_value=2**70)
           | st.floats() | st.text() | st.sampled_from(["\ud800", "é", "\x00", "\u2028"]))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
writings = st.sampled_from([
    {}, {"separators": (",", ":")}, {"indent": 2}, {"ensure_ascii": False}, {"indent": "\t", "ensure_ascii": False},
])


def same(left, right) -> bool:
    """Equal values of the same types all the way down (1 and 1.0 differ, NaN equals NaN)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same(left[key], right[key]) for key in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, float):
        if math.isnan(left):
            return math.isnan(right)
        return left == right and math.copysign(1, left) == math.copysign(1, right)
    return left == right


def outcome(read, text):
    try:
        return "value", read(text)
    except (ValueError, RecursionError) as exc:
        return "refused", type(exc)


@settings(max_examples=400, deadline=None)
@given(json_values, writings)
def test_reading_gives_what_json_loads_gives(value, writing):
    text = json.dumps(value, **writing)
    assert same(jsontext.loads(text), json.loads(text))
    if "\ud800" not in text:  # a lone surrogate has no UTF-8 form
        assert same(jsontext.loads(text.encode()), json.loads(text.encode()))


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet='{}[]",:. \n\t0123456789-+eE"\\utrnaflsNIfy', max_size=40))
def test_any_text_is_read_or_refused_as_json_loads_does(text):
    mine, theirs = outcome(jsontext.loads, text), outcome(json.loads, text)
    assert mine[0] == theirs[0]
    if mine[0] == "value":
        assert same(mine[1], theirs[1])
    else:
        assert mine[1] is theirs[1]


finite_values = st.recursive(
    scalars.filter(lambda value: not isinstance(value, float) or math.isfinite(value)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(finite_values)
def test_writing_gives_the_value_json_dumps_gives(value):
    text = jsontext.dumps(value)
    assert same(json.loads(text), json.loads(json.dumps(value)))
    text.encode()  # always valid UTF-8: a lone surrogate stays escaped


@pytest.mark.parametrize("text", [
    "123456789012345678901234567890",  # beyond 64 bits: orjson would give a float
    "-9223372036854775809",
    '{"big": [18446744073709551616]}',
    '"\\ud800"',  # a lone surrogate: orjson refuses it
    "1e400",  # infinity: orjson refuses it
    "NaN", "-Infinity",
    '{"a": 1, "a": 2}',  # the last member counts
    "\ufeff{}",
    "[" * 2000 + "]" * 2000,  # deeper than orjson goes
])
def test_where_the_libraries_differ_the_result_is_json_loads(text):
    assert outcome(jsontext.loads, text)[0] == outcome(json.loads, text)[0]
    if outcome(json.loads, text)[0] == "value":
        assert same(jsontext.loads(text), json.loads(text))


def test_writing_is_compact_utf8_and_falls_back_where_orjson_refuses():
    assert jsontext.dumps({"titre": "Débat", "tags": [], "n": 1.5}) == '{"titre":"Débat","tags":[],"n":1.5}'
    assert jsontext.dumps({"n": 2**70}) == '{"n":1180591620717411303424}'
    assert jsontext.dumps({1: "a"}) == '{"1":"a"}'
    assert jsontext.dumps("\ud800") == '"\\ud800"'
    # NaN and infinities have no JSON form: null (json.dumps writes NaN, which PostgreSQL refuses)
    assert jsontext.dumps([math.nan, math.inf]) == "[null,null]"
    with pytest.raises(TypeError):
        jsontext.dumps({"when": datetime(2026, 11, 26)})  # as json.dumps: not a JSON value


def test_the_database_reads_and_writes_json_columns_with_it(app):
    from node.extensions import db

    with app.app_context():
        assert db.engine.dialect._json_serializer is jsontext.dumps
        assert db.engine.dialect._json_deserializer is jsontext.loads
