"""RFC 8785 canonical JSON: the RFC's own examples, its number table, and a property test."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.errors import CanonicalizationError
from federation.jcs import SharedCanonicalizer, canonicalize

# RFC 8785 section 3.2.2 (input) and 3.2.4 (expected output).
RFC8785_INPUT = r"""{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
RFC8785_OUTPUT = (
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
).encode()

# RFC 8785 section 3.2.3: property names sort by their UTF-16 code units, not by code points.
RFC8785_SORTING_INPUT = r"""{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"""
RFC8785_SORTED_VALUES = [
    "Carriage Return",
    "One",
    "Control",
    "Latin Small Letter O With Diaeresis",
    "Euro Sign",
    "Emoji: Grinning Face",
    "Hebrew Letter Dalet With Dagesh",
]

# RFC 8785 appendix B: IEEE 754 bit patterns and their ECMAScript serialisation.
RFC8785_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),  # minus zero
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def test_rfc8785_sample():
    assert canonicalize(json.loads(RFC8785_INPUT)) == RFC8785_OUTPUT


def test_rfc8785_property_sorting():
    canonical = canonicalize(json.loads(RFC8785_SORTING_INPUT))
    assert list(json.loads(canonical).values()) == RFC8785_SORTED_VALUES
    # The emoji (a surrogate pair, U+D83D...) sorts before U+FB33 although its code point is higher.
    assert canonical.index("\U0001f600".encode()) < canonical.index("\ufb33".encode())


@pytest.mark.parametrize("bits,expected", RFC8785_NUMBERS, ids=[b for b, _ in RFC8785_NUMBERS])
def test_rfc8785_numbers(bits, expected):
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    assert canonicalize(value) == expected.encode()
    assert canonicalize([value]) == f"[{expected}]".encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_nan_and_infinity_are_refused(bits):
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    with pytest.raises(CanonicalizationError, match=r"\$\.a\[1\].*not allowed in canonical JSON"):
        canonicalize({"a": [1, value]})


@pytest.mark.parametrize(
    "value",
    [{"huge": 10**400}, {1: "non-string key"}, {"lone": "\ud800"}, {"set": {1, 2}}, object()],
)
def test_other_non_json_values_are_refused(value):
    with pytest.raises(CanonicalizationError):
        canonicalize(value)


def test_big_integers_are_written_as_javascript_writes_them():
    # json.loads gives Python ints; JavaScript parses these texts to doubles and JSON.stringify prints
    # exactly these strings (checked with Node 20), so signatures agree with JS implementations.
    assert canonicalize(json.loads("[9007199254740992, -1152921504606846976, 9007199254740993]")) == (
        b"[9007199254740992,-1152921504606847000,9007199254740992]"
    )


def test_canonical_json_is_utf8_without_escaping_non_ascii():
    assert canonicalize({"b": "é", "a": "\u2028"}) == '{"a":"\u2028","b":"é"}'.encode()
    assert canonicalize({"x": [True, None, 1.0, -0.0]}) == b'{"x":[true,null,1,0]}'


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonicalize_is_idempotent(value):
    once = canonicalize(value)
    again = canonicalize(json.loads(once))
    assert once == again
    assert once.decode("utf-8")  # always valid UTF-8


# --- documents that embed signed documents --------------------------------------------------------

# Text keys from every plane: JCS orders members by UTF-16 code units, which differs from code point
# order once characters beyond U+FFFF meet those between U+E000 and U+FFFF.
member_names = st.text(max_size=4) | st.sampled_from(
    ["proof", "object", "@context", "id", "\ue000", "\U0001f600", "type"])
signed_documents = st.fixed_dictionaries(
    {"proof": json_values}, optional={"id": st.text()}
).flatmap(lambda base: st.dictionaries(member_names, json_values, max_size=6).map(lambda extra: {**extra, **base}))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(member_names, json_values, max_size=6), signed_documents, signed_documents)
def test_shared_canonicalizer_writes_the_bytes_of_canonicalize(outer, inner, deeper):
    inner = {**inner, "sub": deeper}  # a signed document inside a signed document inside the outer one
    document = {**outer, "object": inner, "proof": {"type": "DataIntegrityProof"}}
    shared = SharedCanonicalizer()

    def without(value, name):
        return {key: item for key, item in value.items() if key != name}

    # In the order the inbox asks: the outer document without its proof, then the embedded one.
    assert shared.canonicalize(document, omit="proof") == canonicalize(without(document, "proof"))
    assert shared.canonicalize(inner, omit="proof") == canonicalize(without(inner, "proof"))
    assert shared.canonicalize(inner) == canonicalize(inner)
    assert shared.canonicalize(deeper, omit="proof") == canonicalize(without(deeper, "proof"))
    assert shared.canonicalize(document) == canonicalize(document)


@pytest.mark.parametrize("bad", [{"huge": 10**400}, {"lone": "\ud800"}, {"set": {1, 2}}])
def test_shared_canonicalizer_refuses_what_canonicalize_refuses(bad):
    document = {"object": {"proof": {}, **bad}, "proof": {}}
    with pytest.raises(CanonicalizationError):
        SharedCanonicalizer().canonicalize(document, omit="proof")


def test_shared_canonicalizer_reads_big_integers_as_canonicalize_does():
    document = {"object": {"proof": {}, "n": 9007199254740993}, "m": -1152921504606846976}
    assert SharedCanonicalizer().canonicalize(document) == canonicalize(document)
