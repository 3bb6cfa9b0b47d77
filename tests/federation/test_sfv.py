"""The Structured Field subset used by Signature-Input, Signature and Content-Digest (RFC 8941)."""

from __future__ import annotations

import pytest

from federation.errors import SignatureFormatError
from federation.sfv import InnerList, Item, Token, parse_dictionary, serialize_dictionary


def test_parses_signature_input_and_round_trips():
    text = 'sig1=("@method" "@target-uri" "@query-param";name="Pet");created=1618884473;keyid="k\\"1";alg="ed25519"'
    parsed = parse_dictionary(text)
    inner = parsed["sig1"]
    assert isinstance(inner, InnerList)
    assert [item.value for item in inner.items] == ["@method", "@target-uri", "@query-param"]
    assert inner.items[2].params == {"name": "Pet"}
    assert inner.params == {"created": 1618884473, "keyid": 'k"1', "alg": "ed25519"}
    assert serialize_dictionary(parsed) == text


def test_parses_byte_sequences_tokens_booleans_and_decimals():
    parsed = parse_dictionary("a=:aGVsbG8=:, b=tok/en:1, c, d=?0, e=-1.5;x")
    assert parsed["a"] == Item(b"hello")
    assert parsed["b"] == Item(Token("tok/en:1")) and isinstance(parsed["b"].value, Token)
    assert parsed["c"] == Item(True)
    assert parsed["d"] == Item(False)
    assert parsed["e"] == Item(-1.5, {"x": True})
    assert serialize_dictionary(parsed) == "a=:aGVsbG8=:, b=tok/en:1, c, d=?0, e=-1.5;x"


@pytest.mark.parametrize(
    "text",
    ['sig1=("@method"', "sig1=:not base64!:", 'a="unterminated', "A=1", "a=1,", "a=1 b=2", 'a="tab\there"', "a=?2"],
)
def test_malformed_fields_are_refused(text):
    with pytest.raises(SignatureFormatError):
        parse_dictionary(text)
