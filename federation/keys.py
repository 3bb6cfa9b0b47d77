"""Keys: generation, PEM and Multikey encodings, fingerprints, key ids and a small rotation model.

A node actor carries two keys (see docs/protocol.md, "Keys"):

* an RSA-2048 key published as ``publicKey`` (``<actor>#main-key``), because that is the only key
  Mastodon and most servers read for HTTP signatures;
* an Ed25519 key published as a FEP-521a ``Multikey`` under ``assertionMethod``
  (``<actor>#ed25519-key``), used for FEP-8b32 object integrity proofs.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from .errors import KeyFormatError
from .vocab import MULTIKEY

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey

RSA_KEY_SIZE = 2048
#: Multicodec prefix of an Ed25519 public key (0xed as an unsigned varint: 0xed 0x01), FEP-521a.
ED25519_PUB_MULTICODEC = b"\xed\x01"
#: Multicodec prefix of an Ed25519 private key (0x1300 as a varint); only used to read test vectors.
ED25519_PRIV_MULTICODEC = b"\x80\x26"

#: How long a retired key stays usable. It must outlast every HTTP signature made just before the
#: rotation (MAX_SIGNATURE_AGE + MAX_CLOCK_SKEW = 13 h), so a request signed with the old key and
#: delivered late still verifies; one day leaves room for a slow queue on the receiving side.
ROTATION_GRACE = timedelta(days=1)

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


def generate_ed25519() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def generate_rsa(bits: int = RSA_KEY_SIZE) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_key_to_pem(key: PrivateKey) -> str:
    """PKCS#8 PEM, unencrypted: the database column is the protection boundary."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def load_private_key(pem: str | bytes) -> PrivateKey:
    """Read a PKCS#8 (``PRIVATE KEY``) or PKCS#1 (``RSA PRIVATE KEY``) PEM private key."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"not a PEM private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise KeyFormatError(f"unsupported private key type {type(key).__name__}; use RSA or Ed25519")
    return key


def public_key_to_pem(pub: PublicKey) -> str:
    """SubjectPublicKeyInfo PEM (``BEGIN PUBLIC KEY``), the form ``publicKeyPem`` carries."""
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def load_public_key(pem: str | bytes) -> PublicKey:
    """Read an SPKI (``PUBLIC KEY``) or PKCS#1 (``RSA PUBLIC KEY``) PEM public key."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data.strip())
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"not a PEM public key: {exc}") from exc
    if not isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise KeyFormatError(f"unsupported public key type {type(key).__name__}; use RSA or Ed25519")
    return key


def base58btc_encode(data: bytes) -> str:
    """Bitcoin base58 (the ``z`` multibase alphabet); leading zero bytes become ``1``."""
    number = int.from_bytes(data, "big")
    out = []
    while number:
        number, rem = divmod(number, 58)
        out.append(_B58_ALPHABET[rem])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def base58btc_decode(text: str) -> bytes:
    number = 0
    for char in text:
        try:
            number = number * 58 + _B58_INDEX[char]
        except KeyError:
            raise KeyFormatError(f"invalid base58btc character {char!r}") from None
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def multibase_decode(value: str) -> bytes:
    """Decode a multibase string; only base58btc (``z``) is used by FEP-521a and eddsa-jcs-2022."""
    if not value.startswith("z"):
        raise KeyFormatError("only base58btc multibase values (prefix 'z') are supported")
    return base58btc_decode(value[1:])


def multibase_encode(data: bytes) -> str:
    return "z" + base58btc_encode(data)


def ed25519_to_multibase(pub: ed25519.Ed25519PublicKey) -> str:
    """FEP-521a ``publicKeyMultibase``: base58btc(0xed01 || raw key), always ``z6Mk...``."""
    return multibase_encode(ED25519_PUB_MULTICODEC + pub.public_bytes_raw())


def multibase_to_ed25519(value: str) -> ed25519.Ed25519PublicKey:
    raw = multibase_decode(value)
    if raw[:2] != ED25519_PUB_MULTICODEC or len(raw) != 34:
        raise KeyFormatError("not an Ed25519 Multikey (expected multicodec 0xed01 and 32 key bytes)")
    return ed25519.Ed25519PublicKey.from_public_bytes(raw[2:])


def multibase_to_ed25519_private(value: str) -> ed25519.Ed25519PrivateKey:
    """Read a ``secretKeyMultibase`` (multicodec 0x1300), the form the W3C test vectors use."""
    raw = multibase_decode(value)
    if raw[:2] != ED25519_PRIV_MULTICODEC or len(raw) != 34:
        raise KeyFormatError("not an Ed25519 secret Multikey (expected multicodec 0x1300 and 32 bytes)")
    return ed25519.Ed25519PrivateKey.from_private_bytes(raw[2:])


def fingerprint(pub: PublicKey) -> str:
    """``SHA256:<base64>`` of the DER SubjectPublicKeyInfo, unpadded like OpenSSH prints it."""
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode("ascii").rstrip("=")


def _key_id(actor_url: str, fragment: str) -> str:
    if "#" in actor_url:
        raise ValueError(f"actor URL must not have a fragment: {actor_url!r}")
    return f"{actor_url}#{fragment}"


def main_key_id(actor_url: str) -> str:
    """Id of the RSA ``publicKey``; ``#main-key`` is what Mastodon and most servers use."""
    return _key_id(actor_url, "main-key")


def ed25519_key_id(actor_url: str) -> str:
    """Id of the Ed25519 ``Multikey`` listed under ``assertionMethod``."""
    return _key_id(actor_url, "ed25519-key")


def public_key_document(key_id: str, owner: str, pub: PublicKey) -> dict[str, Any]:
    """The ``publicKey`` object of an actor (security/v1 vocabulary)."""
    return {"id": key_id, "owner": owner, "publicKeyPem": public_key_to_pem(pub)}


def multikey_document(key_id: str, controller: str, pub: ed25519.Ed25519PublicKey) -> dict[str, Any]:
    """A FEP-521a ``Multikey`` verification method, to list under ``assertionMethod``."""
    return {
        "id": key_id,
        "type": MULTIKEY,
        "controller": controller,
        "publicKeyMultibase": ed25519_to_multibase(pub),
    }


@dataclass(frozen=True)
class KeyRecord:
    """A public key with its owner, as a key resolver returns it.

    ``owner`` is the actor URL that controls the key (``owner`` of a ``publicKey``, ``controller``
    of a ``Multikey``). ``retired_at`` is set when the owner rotated the key away: the key then
    stays usable for ``ROTATION_GRACE`` so that signatures made just before the rotation verify.
    A compromised key must be removed, not retired.
    """

    key_id: str
    public_key: PublicKey
    owner: str
    retired_at: datetime | None = None

    def is_usable(self, now: datetime, grace: timedelta = ROTATION_GRACE) -> bool:
        return self.retired_at is None or now <= self.retired_at + grace


#: What a key resolver returns. It is the same record: a resolver of remote keys simply never
#: sets ``retired_at``.
ResolvedKey = KeyRecord


#: ``resolver(key_id)`` or ``resolver(key_id, refresh=True)`` -> ``KeyRecord | None``.
#: ``refresh=True`` asks the resolver to bypass its cache and fetch the key again: verifiers call it
#: once when a signature does not verify with the cached key, which is how a peer's key rotation is
#: picked up. A resolver that does not accept ``refresh`` is simply never retried.
KeyResolver = Callable[..., KeyRecord | None]


def _accepts_refresh(resolver: KeyResolver) -> bool:
    try:
        params = inspect.signature(resolver).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "refresh" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def resolve_key(resolver: KeyResolver, key_id: str, *, refresh: bool = False) -> KeyRecord | None:
    """Call a key resolver; with ``refresh=True`` returns ``None`` if the resolver cannot refresh."""
    if not refresh:
        return resolver(key_id)
    if not _accepts_refresh(resolver):
        return None
    return resolver(key_id, refresh=True)
