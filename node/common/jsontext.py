"""JSON text in and out, with orjson where it gives exactly what the standard library gives.

Every received activity is read from JSON text twice (by the inbox, then by the worker from the
stored text) and its event object written as JSON text once (``events.remote_object``); the database's
JSON columns go through the same two functions (the engine's ``json_serializer`` and
``json_deserializer``, node/extensions.py). orjson does each in a fraction of the time (1.9 KB activity:
16 -> 6 us to read; its 1.2 KB object: 15 -> 1 us to write), but differs from ``json`` on a few
inputs, which therefore take the standard library's path:

- ``loads``: orjson reads an integer beyond 64 bits as a float, and refuses what ``json`` accepts (a
  lone surrogate escape such as ``"\\ud800"``, a number too large for a double read as infinity,
  ``NaN``/``Infinity``, a byte order mark, nesting deeper than 1024). A text with a run of 19 digits
  or more, and any text orjson refuses, is read by ``json.loads``: the result is always
  ``json.loads``'s, or its error (a property test compares them on arbitrary texts).
- ``dumps``: compact UTF-8 text (no spaces, no ``\\u`` escapes of accents), the JSON value
  ``json.dumps`` writes. orjson refuses integers beyond 64 bits, lone surrogates and non-string keys:
  those values are written by ``json.dumps``, as are dates, dataclasses and subclasses of the JSON
  types (``json.dumps`` refuses the first two and writes the last as their base type). orjson writes
  NaN and infinities as ``null`` where ``json.dumps`` writes ``NaN``, which is not JSON and which
  PostgreSQL's json type refuses."""

from __future__ import annotations

import json
from typing import Any

import orjson

#: Values ``json.dumps`` refuses go to it (and it refuses them): orjson would write dates and dataclasses.
#: Subclasses of str, int, dict and list too, which ``json.dumps`` writes as their base type.
_PASS_THROUGH = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
#: Integers orjson would read as floats have at least 19 digits (2**64 has 20; 19 is the safe bound).
#: Found by mapping every digit to "0" and looking for 19 of them in a row: a regular expression took
#: longer than parsing the text.
_DIGITS_AS_ZERO = bytes(ord("0") if ord("0") <= byte <= ord("9") else ord("x") for byte in range(256))
_LONG_DIGITS = b"0" * 19


#: What ``read_fast`` gives for a text it leaves to the standard library.
NOT_READ = object()


def read_fast(text: str | bytes | bytearray | memoryview) -> Any:
    """orjson's value of ``text`` when it is exactly ``json.loads``'s, else ``NOT_READ`` (a text with
    a run of 19 digits or more, and any text orjson refuses: read those with the standard library)."""
    if isinstance(text, str):
        raw = text.encode(errors="surrogatepass")
    else:
        raw = text if isinstance(text, bytes) else bytes(text)
    if _LONG_DIGITS in raw.translate(_DIGITS_AS_ZERO):
        return NOT_READ
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return NOT_READ


def loads(text: str | bytes | bytearray | memoryview) -> Any:
    """``json.loads(text)``, faster for every text but the rare ones named above."""
    value = read_fast(text)
    # json.loads reads the rest, or says why not in its own words
    return json.loads(text) if value is NOT_READ else value


def dumps(value: Any) -> str:
    """The JSON text of ``value``, compact and in UTF-8."""
    try:
        return orjson.dumps(value, option=_PASS_THROUGH).decode()
    except TypeError:
        pass
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: kept as its \u escape, as json.dumps writes it
        return json.dumps(value, separators=(",", ":"))
    return text
