"""The part of RFC 8941 (Structured Field Values) that RFC 9421 and RFC 9530 need.

``Signature-Input``, ``Signature``, ``Content-Digest`` and ``Accept-Signature`` are Dictionary
fields. Parsing follows RFC 8941 section 4.2 (strict: any syntax error rejects the whole field, as
the RFC requires); serialisation follows section 4.1, which is also how the ``@signature-params``
line of a signature base is rebuilt from a received ``Signature-Input``.
"""

from __future__ import annotations

import base64
import binascii
import re
import string
from dataclasses import dataclass, field

from .errors import SignatureFormatError


class Token(str):
    """An sf-token (unquoted), kept apart from sf-string so it serialises back unquoted."""


BareItem = int | float | str | Token | bytes | bool


@dataclass(frozen=True)
class Item:
    value: BareItem
    params: dict[str, BareItem] = field(default_factory=dict)


@dataclass(frozen=True)
class InnerList:
    items: list[Item]
    params: dict[str, BareItem] = field(default_factory=dict)


Member = Item | InnerList

_KEY_FIRST = set(string.ascii_lowercase + "*")
_KEY_CHARS = set(string.ascii_lowercase + string.digits + "_-.*")
_TCHAR = set("!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits)
_TOKEN_CHARS = _TCHAR | set(":/")
_BASE64_CHARS = set(string.ascii_letters + string.digits + "+/=")
_NUMBER = re.compile(r"-?\d{1,15}(\.\d{1,3})?")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, what: str) -> SignatureFormatError:
        return SignatureFormatError(f"structured field: {what} at offset {self.pos}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self, chars: str) -> None:
        while self.peek() and self.peek() in chars:
            self.pos += 1

    def dictionary(self) -> dict[str, Member]:
        result: dict[str, Member] = {}
        self.skip(" ")
        while self.pos < len(self.text):
            key = self.key()
            if self.peek() == "=":
                self.pos += 1
                result[key] = self.member()
            else:
                result[key] = Item(True, self.params())
            self.skip(" \t")
            if self.pos >= len(self.text):
                return result
            if self.peek() != ",":
                raise self.error("expected ','")
            self.pos += 1
            self.skip(" \t")
            if self.pos >= len(self.text):
                raise self.error("trailing ','")
        return result

    def member(self) -> Member:
        if self.peek() == "(":
            return self.inner_list()
        return Item(self.bare_item(), self.params())

    def inner_list(self) -> InnerList:
        self.pos += 1
        items: list[Item] = []
        while self.pos < len(self.text):
            self.skip(" ")
            if self.peek() == ")":
                self.pos += 1
                return InnerList(items, self.params())
            items.append(Item(self.bare_item(), self.params()))
            if self.peek() not in (" ", ")"):
                raise self.error("expected ' ' or ')' in inner list")
        raise self.error("unterminated inner list")

    def params(self) -> dict[str, BareItem]:
        params: dict[str, BareItem] = {}
        while self.peek() == ";":
            self.pos += 1
            self.skip(" ")
            key = self.key()
            value: BareItem = True
            if self.peek() == "=":
                self.pos += 1
                value = self.bare_item()
            params[key] = value
        return params

    def key(self) -> str:
        start = self.pos
        if self.peek() not in _KEY_FIRST or not self.peek():
            raise self.error("invalid key")
        while self.peek() and self.peek() in _KEY_CHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def bare_item(self) -> BareItem:
        char = self.peek()
        if char == '"':
            return self.sf_string()
        if char == ":":
            return self.byte_sequence()
        if char == "?":
            value = self.text[self.pos + 1 : self.pos + 2]
            if value not in ("0", "1"):
                raise self.error("invalid boolean")
            self.pos += 2
            return value == "1"
        if char == "-" or char.isdigit():
            match = _NUMBER.match(self.text, self.pos)
            if not match:
                raise self.error("invalid number")
            self.pos = match.end()
            return float(match.group()) if match.group(1) else int(match.group())
        if char and (char.isalpha() and char.isascii() or char == "*"):
            start = self.pos
            while self.peek() and self.peek() in _TOKEN_CHARS:
                self.pos += 1
            return Token(self.text[start : self.pos])
        raise self.error("invalid item")

    def sf_string(self) -> str:
        self.pos += 1
        out = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\":
                escaped = self.peek()
                if escaped not in ('"', "\\"):
                    raise self.error("invalid escape in string")
                out.append(escaped)
                self.pos += 1
            elif char == '"':
                return "".join(out)
            elif not (" " <= char <= "~"):
                raise self.error("invalid character in string")
            else:
                out.append(char)
        raise self.error("unterminated string")

    def byte_sequence(self) -> bytes:
        end = self.text.find(":", self.pos + 1)
        if end < 0:
            raise self.error("unterminated byte sequence")
        body = self.text[self.pos + 1 : end]
        if not set(body) <= _BASE64_CHARS:
            raise self.error("invalid base64 in byte sequence")
        self.pos = end + 1
        try:
            return base64.b64decode(body + "=" * (-len(body) % 4))
        except binascii.Error:
            raise self.error("invalid base64 in byte sequence") from None


def parse_dictionary(text: str) -> dict[str, Member]:
    """Parse a Dictionary field value; raises :class:`SignatureFormatError` on any syntax error."""
    return _Parser(text.strip(" ")).dictionary()


def serialize_bare_item(value: BareItem) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.1f}"
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    if isinstance(value, Token):
        return str(value)
    if isinstance(value, str):
        if any(not (" " <= char <= "~") for char in value):
            raise SignatureFormatError("sf-string must be printable ASCII")
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"not a structured field item: {value!r}")


def serialize_params(params: dict[str, BareItem]) -> str:
    return "".join(
        f";{key}" if value is True else f";{key}={serialize_bare_item(value)}" for key, value in params.items()
    )


def serialize_item(item: Item) -> str:
    return serialize_bare_item(item.value) + serialize_params(item.params)


def serialize_inner_list(inner: InnerList) -> str:
    return "(" + " ".join(serialize_item(item) for item in inner.items) + ")" + serialize_params(inner.params)


def serialize_dictionary(members: dict[str, Member]) -> str:
    parts = []
    for key, member in members.items():
        if isinstance(member, InnerList):
            parts.append(f"{key}={serialize_inner_list(member)}")
        elif member.value is True:
            parts.append(key + serialize_params(member.params))
        else:
            parts.append(f"{key}={serialize_item(member)}")
    return ", ".join(parts)
