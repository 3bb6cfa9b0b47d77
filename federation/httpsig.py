"""HTTP signatures on server-to-server requests, in both flavours the fediverse speaks.

* ``"rfc9421"``: HTTP Message Signatures (RFC 9421), algorithms ``rsa-v1_5-sha256`` and
  ``ed25519``, covering ``"@method" "@target-uri" "@authority"`` (+ ``"content-digest"`` when
  there is a body, RFC 9530 ``Content-Digest: sha-256=:...:``), with ``created``, ``keyid`` and
  ``alg`` parameters.
* ``"cavage"``: draft-cavage-http-signatures-12, as Mastodon speaks it: algorithms ``rsa-sha256``
  and ``hs2019``, headers ``(request-target) host date digest`` with ``Digest: SHA-256=...``.

Outgoing requests try the peer's remembered flavour first and fall back to the other one on a
401/403 (the "double knock", see the SWICG ActivityPub HTTP Signature report). Verification takes
``now`` and a key resolver and returns a :class:`SignatureResult` whose ``reason`` is meant to be
sent back to the peer in the 401.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from .clock import MAX_CLOCK_SKEW, MAX_SIGNATURE_AGE, check_window, require_aware
from .errors import SignatureFormatError, UnsupportedKeyError
from .keys import KeyRecord, KeyResolver, PrivateKey, PublicKey, resolve_key
from .sfv import InnerList, Item, parse_dictionary, serialize_inner_list, serialize_item
from .urls import authority_of, origin_of, request_target_of
from .vocab import ACTIVITY_JSON

__all__ = [
    "CAVAGE",
    "MAX_CLOCK_SKEW",
    "MAX_SIGNATURE_AGE",
    "MIN_RSA_BITS",
    "RFC9421",
    "DeliveryResult",
    "SignatureResult",
    "SignedAuth",
    "Signer",
    "cavage_signing_string",
    "content_digest",
    "legacy_digest",
    "post_signed",
    "rfc9421_signature_base",
    "sign_request",
    "verify_raw",
    "verify_request",
]

Flavour = Literal["rfc9421", "cavage"]
RFC9421: Flavour = "rfc9421"
CAVAGE: Flavour = "cavage"
FLAVOURS: tuple[Flavour, ...] = (RFC9421, CAVAGE)

#: RSA keys shorter than this are refused: 1024-bit RSA is within reach of a determined attacker,
#: and every fediverse server generates 2048-bit keys or longer.
MIN_RSA_BITS = 2048
#: Status codes that make the double knock retry with the other flavour.
REFUSED_STATUSES = (401, 403)
SIGNATURE_LABEL = "sig1"

#: RFC 9421 algorithm names we accept, with the key type each needs.
RFC9421_ALGORITHMS: dict[str, type] = {"rsa-v1_5-sha256": rsa.RSAPublicKey, "ed25519": ed25519.Ed25519PublicKey}
#: draft-cavage algorithm names we accept. ``hs2019`` means "derive from the key": RSA keys use
#: RSASSA-PKCS1-v1_5 with SHA-256 (as Mastodon does), Ed25519 keys use Ed25519.
CAVAGE_ALGORITHMS: dict[str, tuple[type, ...]] = {
    "rsa-sha256": (rsa.RSAPublicKey,),
    "hs2019": (rsa.RSAPublicKey, ed25519.Ed25519PublicKey),
}
#: Components every RFC 9421 signature we make covers (``content-digest`` added with a body).
RFC9421_COMPONENTS = ("@method", "@target-uri", "@authority")
#: Headers every draft-cavage signature we make covers (``digest`` added with a body).
CAVAGE_HEADERS = ("(request-target)", "host", "date")
_SIGNATURE_HEADERS = ("signature", "signature-input", "digest", "content-digest", "date")
_DIGESTS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}


@dataclass(frozen=True)
class SignatureResult:
    ok: bool
    reason: str | None
    key_id: str | None = None
    #: Actor that controls the key; the inbox must still check it matches the activity's actor.
    owner: str | None = None
    flavour: Flavour | None = None
    algorithm: str | None = None


class _Refused(Exception):
    """Internal: carries a failure reason out of nested checks."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- headers and digests ------------------------------------------------------------------------


def _normalize_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names; repeated fields joined with ", " (RFC 9110 5.3), values trimmed."""
    pairs = headers.items() if hasattr(headers, "items") else headers
    result: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        value = re.sub(r"\s*\r?\n\s*", " ", str(value)).strip()
        result[key] = f"{result[key]}, {value}" if key in result else value
    return result


def content_digest(body: bytes) -> str:
    """RFC 9530 ``Content-Digest`` value: ``sha-256=:<base64>:``."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


def legacy_digest(body: bytes) -> str:
    """RFC 3230 ``Digest`` value as draft-cavage peers expect it: ``SHA-256=<base64>``."""
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def http_date(now: datetime) -> str:
    return format_datetime(require_aware(now), usegmt=True)


def _check_content_digest(value: str, body: bytes) -> None:
    try:
        members = parse_dictionary(value)
    except SignatureFormatError:
        raise _Refused("digest mismatch") from None
    known = [(name, m) for name, m in members.items() if name in _DIGESTS and isinstance(m, Item)]
    if not known:
        raise _Refused("digest mismatch")
    for name, member in known:
        expected = _DIGESTS[name](body).digest()
        if not isinstance(member.value, bytes) or not hmac.compare_digest(member.value, expected):
            raise _Refused("digest mismatch")


def _check_legacy_digest(value: str, body: bytes) -> None:
    known = 0
    for part in value.split(","):
        name, _, encoded = part.strip().partition("=")
        algorithm = _DIGESTS.get(name.strip().lower())
        if algorithm is None:
            continue
        known += 1
        try:
            claimed = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise _Refused("digest mismatch") from None
        if not hmac.compare_digest(claimed, algorithm(body).digest()):
            raise _Refused("digest mismatch")
    if not known:
        raise _Refused("digest mismatch")


# --- raw signatures -----------------------------------------------------------------------------


def _sign_bytes(private_key: PrivateKey, message: bytes) -> bytes:
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key.sign(message)
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    raise UnsupportedKeyError(f"cannot sign HTTP requests with {type(private_key).__name__}")


def verify_raw(public_key: PublicKey, message: bytes, signature: bytes) -> bool:
    """Check ``signature`` over ``message``: Ed25519, or RSASSA-PKCS1-v1_5 with SHA-256 for RSA."""
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, message)
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _key_allowed(key: KeyRecord, allowed: tuple[type, ...], now: datetime) -> None:
    if not isinstance(key.public_key, allowed):
        raise _Refused("algorithm not allowed")
    if isinstance(key.public_key, rsa.RSAPublicKey) and key.public_key.key_size < MIN_RSA_BITS:
        raise _Refused("key too short")
    if not key.is_usable(now):
        raise _Refused("key retired")


def _verify_with_resolver(
    resolver: KeyResolver,
    key_id: str,
    allowed: tuple[type, ...],
    message: bytes,
    signature: bytes,
    now: datetime,
) -> KeyRecord:
    """Verify with the resolved key; on failure ask the resolver once more with ``refresh=True``,
    which is how a peer's key rotation gets picked up without trusting a stale cache forever."""
    reason = "unknown key"
    for refresh in (False, True):
        key = resolve_key(resolver, key_id, refresh=refresh)
        if key is None:
            break
        try:
            _key_allowed(key, allowed, now)
        except _Refused as refused:
            reason = refused.reason
            continue
        if verify_raw(key.public_key, message, signature):
            return key
        reason = "signature mismatch"
    raise _Refused(reason)


# --- RFC 9421 -----------------------------------------------------------------------------------


def _component_value(item: Item, method: str, url: str, headers: Mapping[str, str]) -> str:
    name = item.value
    if not isinstance(name, str) or item.params:
        raise _Refused(f"unsupported component: {serialize_item(item)}")
    if name.startswith("@"):
        parts = urlsplit(url)
        derived = {
            "@method": lambda: method.upper(),
            "@target-uri": lambda: url,
            "@authority": lambda: authority_of(url),
            "@scheme": lambda: parts.scheme.lower(),
            "@request-target": lambda: request_target_of(url),
            "@path": lambda: parts.path or "/",
            "@query": lambda: "?" + parts.query,
        }.get(name)
        if derived is None:
            raise _Refused(f"unsupported component: {name}")
        return derived()
    if name != name.lower():
        raise _Refused(f"unsupported component: {name}")
    if name not in headers:
        raise _Refused(f"missing header: {name}")
    return headers[name]


def _signature_base(method: str, url: str, headers: Mapping[str, str], inner: InnerList) -> str:
    lines = []
    seen = set()
    for item in inner.items:
        identifier = serialize_item(item)
        if identifier in seen:
            raise _Refused(f"duplicate component: {identifier}")
        seen.add(identifier)
        lines.append(f"{identifier}: {_component_value(item, method, url, headers)}")
    lines.append(f'"@signature-params": {serialize_inner_list(inner)}')
    return "\n".join(lines)


def rfc9421_signature_base(method: str, url: str, headers: Mapping[str, str], label: str | None = None) -> str:
    """The signature base (RFC 9421 section 2.5) of the signature ``label`` of a received request.

    Exposed for known-answer tests and debugging; raises ``SignatureFormatError`` or ``ValueError``.
    """
    normalized = _normalize_headers(headers)
    inputs = parse_dictionary(normalized.get("signature-input", ""))
    label = label or next(iter(inputs), None)
    inner = inputs.get(label) if label else None
    if not isinstance(inner, InnerList):
        raise SignatureFormatError(f"no signature input labelled {label!r}")
    try:
        return _signature_base(method, url, normalized, inner)
    except _Refused as refused:
        raise ValueError(refused.reason) from None


def _rfc9421_policy(components: set[str], url: str, has_body: bool) -> None:
    """Which components must be covered for the signature to vouch for the whole request."""
    if "@method" not in components:
        raise _Refused("missing covered component: @method")
    if "@target-uri" not in components:
        # @target-uri carries scheme, authority, path and query at once; without it the same
        # information must come from the finer components.
        if not components & {"@request-target", "@path"}:
            raise _Refused("missing covered component: @target-uri")
        if not components & {"@authority", "host"}:
            raise _Refused("missing covered component: @authority")
        if urlsplit(url).query and not components & {"@request-target", "@query"}:
            raise _Refused("missing covered component: @query")
    if has_body and "content-digest" not in components:
        raise _Refused("missing covered component: content-digest")


def _verify_rfc9421_member(
    label: str,
    inner: InnerList,
    signature_member: Any,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    resolver: KeyResolver,
    now: datetime,
) -> SignatureResult:
    key_id = inner.params.get("keyid")
    key_id = key_id if isinstance(key_id, str) else None
    alg = inner.params.get("alg")

    def refused(reason: str) -> SignatureResult:
        return SignatureResult(False, reason, key_id, flavour=RFC9421, algorithm=alg if isinstance(alg, str) else None)

    try:
        if not isinstance(signature_member, Item) or not isinstance(signature_member.value, bytes):
            raise _Refused("missing signature")
        if key_id is None:
            raise _Refused("missing keyid")
        if alg is not None and alg not in RFC9421_ALGORITHMS:
            raise _Refused("algorithm not allowed")
        created = inner.params.get("created")
        if not isinstance(created, int) or isinstance(created, bool):
            raise _Refused("missing created")
        components = {item.value for item in inner.items if isinstance(item.value, str)}
        _rfc9421_policy(components, url, bool(body))
        window = check_window(datetime.fromtimestamp(created, UTC), now, max_age=MAX_SIGNATURE_AGE)
        if window:
            raise _Refused(window)
        expires = inner.params.get("expires")
        if isinstance(expires, int) and not isinstance(expires, bool) and now > datetime.fromtimestamp(expires, UTC):
            raise _Refused("signature expired")
        if "content-digest" in components or (body and "content-digest" in headers):
            if "content-digest" not in headers:
                raise _Refused("missing header: content-digest")
            _check_content_digest(headers["content-digest"], body)
        base = _signature_base(method, url, headers, inner).encode("utf-8")
        allowed = (RFC9421_ALGORITHMS[alg],) if isinstance(alg, str) else tuple(RFC9421_ALGORITHMS.values())
        key = _verify_with_resolver(resolver, key_id, allowed, base, signature_member.value, now)
    except _Refused as exc:
        return refused(exc.reason)
    algorithm = (
        alg
        if isinstance(alg, str)
        else ("ed25519" if isinstance(key.public_key, ed25519.Ed25519PublicKey) else "rsa-v1_5-sha256")
    )
    return SignatureResult(True, None, key_id, key.owner, RFC9421, algorithm)


def _verify_rfc9421(
    method: str, url: str, headers: Mapping[str, str], body: bytes, resolver: KeyResolver, now: datetime
) -> SignatureResult:
    try:
        inputs = parse_dictionary(headers["signature-input"])
        signatures = parse_dictionary(headers.get("signature", ""))
    except SignatureFormatError:
        return SignatureResult(False, "malformed signature", flavour=RFC9421)
    labelled = [(label, member) for label, member in inputs.items() if isinstance(member, InnerList)]
    if not labelled:
        return SignatureResult(False, "missing signature", flavour=RFC9421)
    results = []
    for label, inner in labelled:
        result = _verify_rfc9421_member(label, inner, signatures.get(label), method, url, headers, body, resolver, now)
        if result.ok:
            return result
        results.append(result)
    return results[0]


# --- draft-cavage-12 ----------------------------------------------------------------------------

_CAVAGE_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^",\s]*))\s*(?:,|$)')


def parse_cavage_signature(value: str) -> dict[str, str]:
    """Parse ``keyId="...",algorithm="...",headers="...",signature="..."`` into a dict."""
    params: dict[str, str] = {}
    position = 0
    value = value.strip()
    while position < len(value):
        match = _CAVAGE_PARAM.match(value, position)
        if not match or match.end() == position:
            raise SignatureFormatError("malformed draft-cavage Signature header")
        quoted, bare = match.group(2), match.group(3)
        params[match.group(1)] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        position = match.end()
    return params


def cavage_signing_string(
    method: str, url: str, headers: Mapping[str, str], names: Iterable[str], params: Mapping[str, str] | None = None
) -> str:
    """The draft-cavage-12 signing string (section 2.3) for the listed header names."""
    normalized = _normalize_headers(headers)
    params = params or {}
    lines = []
    for name in names:
        if name == "(request-target)":
            value = f"{method.lower()} {request_target_of(url)}"
        elif name in ("(created)", "(expires)"):
            if name[1:-1] not in params:
                raise ValueError(f"missing parameter: {name[1:-1]}")
            value = params[name[1:-1]]
        elif name == "host" and "host" not in normalized:
            value = authority_of(url)
        elif name in normalized:
            value = normalized[name]
        else:
            raise ValueError(f"missing header: {name}")
        lines.append(f"{name}: {value}")
    return "\n".join(lines)


def _timestamp_param(params: Mapping[str, str], name: str) -> datetime | None:
    if name not in params:
        return None
    try:
        return datetime.fromtimestamp(int(params[name]), UTC)
    except (ValueError, OverflowError):
        raise _Refused("malformed signature") from None


def _verify_cavage(
    method: str, url: str, headers: Mapping[str, str], body: bytes, resolver: KeyResolver, now: datetime
) -> SignatureResult:
    raw = headers.get("signature")
    if raw is None:
        raw = headers.get("authorization", "")[len("signature ") :]
    key_id = None
    algorithm = None
    try:
        try:
            params = parse_cavage_signature(raw)
        except SignatureFormatError:
            raise _Refused("malformed signature") from None
        key_id = params.get("keyId")
        if not key_id or "signature" not in params:
            raise _Refused("malformed signature")
        # draft-cavage-12 2.1.3: without an algorithm parameter the verifier derives it from the key.
        algorithm = params.get("algorithm", "hs2019").lower()
        if algorithm not in CAVAGE_ALGORITHMS:
            raise _Refused("algorithm not allowed")
        names = params.get("headers", "date").lower().split()
        for required in ("(request-target)", "host"):
            if required not in names:
                raise _Refused(f"missing covered component: {required}")
        if "date" not in names and "(created)" not in names:
            raise _Refused("missing covered component: date")
        if body and "digest" not in names:
            raise _Refused("missing covered component: digest")
        if "date" in names:
            if "date" not in headers:
                raise _Refused("missing header: date")
            try:
                date = parsedate_to_datetime(headers["date"])
            except (TypeError, ValueError):
                raise _Refused("invalid date") from None
            if date.tzinfo is None:
                raise _Refused("invalid date")
            window = check_window(date.astimezone(UTC), now, max_age=MAX_SIGNATURE_AGE)
            if window:
                raise _Refused(window)
        created = _timestamp_param(params, "created")
        if created is not None:
            window = check_window(created, now, max_age=MAX_SIGNATURE_AGE)
            if window:
                raise _Refused(window)
        expires = _timestamp_param(params, "expires")
        if expires is not None and now > expires:
            raise _Refused("signature expired")
        if "digest" in names or (body and "digest" in headers):
            if "digest" not in headers:
                raise _Refused("missing header: digest")
            _check_legacy_digest(headers["digest"], body)
        try:
            message = cavage_signing_string(method, url, headers, names, params).encode("utf-8")
            signature = base64.b64decode(params["signature"], validate=True)
        except ValueError as exc:  # binascii.Error is a ValueError
            reason = str(exc) if str(exc).startswith("missing") else "malformed signature"
            raise _Refused(reason) from None
        key = _verify_with_resolver(resolver, key_id, CAVAGE_ALGORITHMS[algorithm], message, signature, now)
    except _Refused as exc:
        return SignatureResult(False, exc.reason, key_id, flavour=CAVAGE, algorithm=algorithm)
    return SignatureResult(True, None, key_id, key.owner, CAVAGE, algorithm)


# --- public entry points ------------------------------------------------------------------------


def sign_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    private_key: PrivateKey,
    key_id: str,
    *,
    flavour: Flavour,
    now: datetime,
) -> dict[str, str]:
    """Return the headers to add to a request so that it carries a signature of ``flavour``.

    Always a ``Date``; ``Content-Digest`` (RFC 9421) or ``Digest`` and ``Host`` (cavage) as
    needed; then ``Signature-Input`` + ``Signature`` or ``Signature``. The URL must be exactly the
    one sent (query string included). A ``Date`` already present in ``headers`` is kept.
    """
    now = require_aware(now)
    if '"' in key_id or "\\" in key_id:
        raise ValueError("key id must not contain quotes or backslashes")
    method = method.upper()
    body = body or b""
    normalized = _normalize_headers(headers)
    added: dict[str, str] = {}
    if "date" not in normalized:
        added["Date"] = normalized["date"] = http_date(now)
    if flavour == RFC9421:
        components = list(RFC9421_COMPONENTS)
        if body:
            added["Content-Digest"] = normalized["content-digest"] = content_digest(body)
            components.append("content-digest")
        algorithm = "ed25519" if isinstance(private_key, ed25519.Ed25519PrivateKey) else "rsa-v1_5-sha256"
        params = {"created": int(now.timestamp()), "keyid": key_id, "alg": algorithm}
        inner = InnerList([Item(name) for name in components], params)
        base = _signature_base(method, url, normalized, inner)
        signature = base64.b64encode(_sign_bytes(private_key, base.encode("utf-8"))).decode("ascii")
        added["Signature-Input"] = f"{SIGNATURE_LABEL}={serialize_inner_list(inner)}"
        added["Signature"] = f"{SIGNATURE_LABEL}=:{signature}:"
    elif flavour == CAVAGE:
        names = list(CAVAGE_HEADERS)
        if "host" not in normalized:
            added["Host"] = normalized["host"] = authority_of(url)
        if body:
            added["Digest"] = normalized["digest"] = legacy_digest(body)
            names.append("digest")
        algorithm = "hs2019" if isinstance(private_key, ed25519.Ed25519PrivateKey) else "rsa-sha256"
        message = cavage_signing_string(method, url, normalized, names)
        signature = base64.b64encode(_sign_bytes(private_key, message.encode("utf-8"))).decode("ascii")
        added["Signature"] = (
            f'keyId="{key_id}",algorithm="{algorithm}",headers="{" ".join(names)}",signature="{signature}"'
        )
    else:
        raise ValueError(f"unknown signature flavour {flavour!r}; use 'rfc9421' or 'cavage'")
    return added


def verify_request(
    method: str,
    url: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes | None,
    key_resolver: KeyResolver,
    *,
    now: datetime,
) -> SignatureResult:
    """Verify the HTTP signature of a received request (either flavour).

    ``url`` is the URL as the client addressed it (``https://`` behind a TLS proxy), ``headers``
    any mapping or list of pairs (case does not matter), ``body`` the raw bytes. The result
    names the key and its owner; checking that the owner is the activity's actor is the caller's.
    """
    now = require_aware(now)
    normalized = _normalize_headers(headers)
    body = body or b""
    if "signature-input" in normalized:
        return _verify_rfc9421(method, url, normalized, body, key_resolver, now)
    if "signature" in normalized or normalized.get("authorization", "").lower().startswith("signature "):
        return _verify_cavage(method, url, normalized, body, key_resolver, now)
    return SignatureResult(False, "missing signature")


def flavour_of(headers: Mapping[str, str]) -> Flavour | None:
    """Which flavour a set of request headers was signed with."""
    normalized = _normalize_headers(headers)
    if "signature-input" in normalized:
        return RFC9421
    if "signature" in normalized:
        return CAVAGE
    return None


def other_flavour(flavour: Flavour) -> Flavour:
    return CAVAGE if flavour == RFC9421 else RFC9421


# --- requests integration -----------------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    """A private key and the id under which its public key is published."""

    key_id: str
    private_key: PrivateKey


def _origin_string(url: str) -> str:
    origin = origin_of(url)
    if origin is None:
        return url
    return f"{origin[0]}://{authority_of(url)}"


class SignedAuth(requests.auth.AuthBase):
    """Sign every request of a ``requests`` call with the given key.

    ``flavour`` is the flavour tried first. With ``double_knock=True`` a 401/403 answer makes the
    request go out once more, signed with the other flavour. ``on_flavour_learned(origin, flavour)``
    is called with the flavour the server accepted (any answer but 401/403), so the caller can
    remember it per server and knock right the first time next time. ``flavour_signers`` may give
    another key per flavour (by default ``signer``, normally the RSA ``#main-key``, is used for
    both: most servers only look up ``publicKey`` when verifying HTTP signatures).
    """

    def __init__(
        self,
        signer: Signer,
        *,
        flavour: Flavour = RFC9421,
        clock: Callable[[], datetime],
        double_knock: bool = False,
        on_flavour_learned: Callable[[str, Flavour], None] | None = None,
        flavour_signers: Mapping[Flavour, Signer] | None = None,
    ) -> None:
        if flavour not in FLAVOURS:
            raise ValueError(f"unknown signature flavour {flavour!r}")
        self.signer = signer
        self.flavour = flavour
        self.clock = clock
        self.double_knock = double_knock
        self.on_flavour_learned = on_flavour_learned
        self.flavour_signers = dict(flavour_signers or {})

    def _sign(self, request: requests.PreparedRequest, flavour: Flavour) -> None:
        body = request.body
        if isinstance(body, str):
            # requests would send a str body as Latin-1; encode once here so the digest and the
            # bytes on the wire are the same.
            body = request.body = body.encode("utf-8")
        if body is not None and not isinstance(body, bytes):
            raise TypeError("SignedAuth can only sign in-memory bodies (bytes or str)")
        for name in _SIGNATURE_HEADERS:
            request.headers.pop(name, None)
        signer = self.flavour_signers.get(flavour, self.signer)
        added = sign_request(
            request.method or "GET",
            request.url or "",
            request.headers,
            body,
            signer.private_key,
            signer.key_id,
            flavour=flavour,
            now=self.clock(),
        )
        request.headers.update(added)
        if body:
            request.headers["Content-Length"] = str(len(body))

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        self._sign(request, self.flavour)
        request.register_hook("response", self._on_response)
        return request

    def _learned(self, response: requests.Response) -> None:
        flavour = flavour_of(response.request.headers)
        if self.on_flavour_learned and flavour and response.status_code not in REFUSED_STATUSES:
            self.on_flavour_learned(_origin_string(response.request.url or ""), flavour)

    def _on_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if response.status_code not in REFUSED_STATUSES or not self.double_knock:
            self._learned(response)
            return response
        used = flavour_of(response.request.headers) or self.flavour
        # Same dance as requests' HTTPDigestAuth: drain and release the first connection, then
        # resend a copy of the prepared request signed the other way on the same adapter.
        _ = response.content
        response.close()
        retry = response.request.copy()
        self._sign(retry, other_flavour(used))
        second = response.connection.send(retry, **kwargs)
        second.history.append(response)
        second.request = retry
        self._learned(second)
        return second


@dataclass(frozen=True)
class DeliveryResult:
    response: requests.Response
    #: The flavour the server accepted, ``None`` if it refused both.
    flavour: Flavour | None

    @property
    def knocked_twice(self) -> bool:
        return bool(self.response.history)


def post_signed(
    session: requests.Session,
    url: str,
    body: bytes | str | Mapping[str, Any],
    signer: Signer,
    *,
    preferred_flavour: Flavour = RFC9421,
    clock: Callable[[], datetime],
    content_type: str = ACTIVITY_JSON,
    headers: Mapping[str, str] | None = None,
    timeout: float | tuple[float, float] = (3.05, 10),
    flavour_signers: Mapping[Flavour, Signer] | None = None,
) -> DeliveryResult:
    """POST ``body`` to an inbox with the double knock: ``preferred_flavour`` first, the other
    flavour once if the server answers 401/403. Redirects are not followed (an inbox that
    redirects a POST is misconfigured, and following would re-send the signed body elsewhere).

    Check the target with :func:`federation.fetch.check_url_allowed` before calling this.
    """
    if isinstance(body, Mapping):
        body = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    data = body.encode("utf-8") if isinstance(body, str) else body
    auth = SignedAuth(
        signer,
        flavour=preferred_flavour,
        clock=clock,
        double_knock=True,
        flavour_signers=flavour_signers,
    )
    response = session.post(
        url,
        data=data,
        headers={"Content-Type": content_type, **(headers or {})},
        auth=auth,
        timeout=timeout,
        allow_redirects=False,
    )
    accepted = response.status_code not in REFUSED_STATUSES
    return DeliveryResult(response, flavour_of(response.request.headers) if accepted else None)
