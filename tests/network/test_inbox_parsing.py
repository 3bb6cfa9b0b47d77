"""The inbox reads a body with orjson when that gives exactly what ``json.loads`` gives, and writes
a batch's activities out again to store them; otherwise (and for a body larger than one activity may
be) it reads the body once and keeps each activity's text as its sender wrote it. Either way the
reading must give exactly what ``json.loads`` gives, and each stored text must be the JSON of its
activity -- whatever the spacing, escapes or key order. The depth check counts nested non-empty
containers as a plain recursive definition does."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.common.errors import HallesError
from node.fedi.inbox import _read_keeping_items, is_batch, parse_received

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
documents = st.dictionaries(st.text(max_size=6) | st.just("object"), json_values, max_size=5)
batches = st.builds(lambda members, items: {**members, "object": items},
                    documents, st.lists(st.dictionaries(st.text(max_size=6), json_values, max_size=4), max_size=5))
writings = st.sampled_from([
    {}, {"separators": (",", ":")}, {"indent": 2}, {"ensure_ascii": False}, {"indent": "\t", "ensure_ascii": False},
])


def _activity(members: dict) -> dict:
    return {**members, "id": "https://lyon.example.org/activities/1", "type": members.get("type", "Create"),
            "actor": "https://lyon.example.org/actor"}


@settings(max_examples=300, deadline=None)
@given(documents | batches, writings, st.booleans())
def test_the_body_of_a_post_is_read_as_json_loads_reads_it(document, writing, as_batch):
    """``parse_received`` (orjson first): the activity json.loads reads, and for a batch the JSON of
    each of its activities."""
    if as_batch:
        listed = document.get("object") if isinstance(document.get("object"), list) else []
        items = [item for item in listed if isinstance(item, dict)]
        document = {**_activity(document), "type": "Announce",
                    "object": [_activity(item) for item in items] or [_activity({})]}
    else:
        document = _activity(document)
    body = json.dumps(document, **writing).encode()
    try:
        activity, texts = parse_received("application/activity+json", body)
    except HallesError:  # too deep, not an activity...: refused, as it was before orjson
        return
    assert activity == json.loads(body)
    if is_batch(activity):
        assert [json.loads(text) for text in texts] == activity["object"]
    else:
        assert texts is None


@settings(max_examples=300, deadline=None)
@given(documents | batches, writings)
def test_what_is_read_is_what_json_loads_reads(document, writing):
    text = json.dumps(document, **writing)
    members, items = _read_keeping_items(text)
    assert members == json.loads(text)
    if isinstance(members.get("object"), list):
        assert items is not None
        assert [json.loads(item) for item in items] == members["object"]
    else:
        assert items is None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='{}[]",: \n\tob0je1ct"\\xnul', max_size=40))
def test_anything_else_is_refused_or_read_as_json_loads_reads_it(text):
    try:
        members, items = _read_keeping_items(text)
    except (ValueError, IndexError, RecursionError):
        return  # the inbox then reads the body with json.loads, which says what is wrong
    assert members == json.loads(text)


@pytest.mark.parametrize("text", [
    '{"object": [1, 2], "object": "x"}',  # the last member counts, as for json.loads
    '{"object": "x", "object": [{"a": 1}]}',
    ' {"a": NaN, "object": []}',
    '{"object": [1, 2,]}',
    '{"object": [1 2]}',
    '{"a": 1} {"b": 2}',
    '[1]',
    '{}',
])
def test_edge_cases(text):
    def refuse(name):
        raise ValueError(name)

    try:
        expected = json.loads(text, parse_constant=refuse)
    except ValueError:
        expected = None
    try:
        members, items = _read_keeping_items(text)
    except (ValueError, IndexError):
        return  # the inbox reads the body again with json.loads, which accepts it or says what is wrong
    assert expected is not None and members == expected
    assert (items is None) == (not isinstance(members.get("object"), list))


def nesting(value) -> int:
    """How many non-empty objects or arrays nest in each other in ``value`` (the reference)."""
    if not isinstance(value, dict | list) or not value:
        return 0
    return 1 + max(nesting(child) for child in (value.values() if isinstance(value, dict) else value))


@settings(max_examples=300, deadline=None)
@given(json_values | documents | batches, st.integers(min_value=0, max_value=6))
def test_the_depth_check_counts_nested_non_empty_containers(value, limit):
    from node.fedi.inbox import _deeper_than

    assert _deeper_than(value, limit) == (nesting(value) > limit)
