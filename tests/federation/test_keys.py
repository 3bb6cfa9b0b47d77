"""Keys: RFC 8032 known answers, PEM and Multikey round trips, fingerprints, rotation."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from federation import keys
from federation.clock import MAX_CLOCK_SKEW, MAX_SIGNATURE_AGE
from federation.errors import KeyFormatError

from .vectors import RFC8032_TESTS, RFC9421_ED25519_PRIVATE, RFC9421_ED25519_PUBLIC, RFC9421_RSA_PRIVATE


@pytest.mark.parametrize("name,secret,public,message,signature", RFC8032_TESTS, ids=[t[0] for t in RFC8032_TESTS])
def test_rfc8032_ed25519_vectors(name, secret, public, message, signature):
    private = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
    assert private.public_key().public_bytes_raw().hex() == public
    # Ed25519 is deterministic: the exact published signature must come out.
    assert private.sign(bytes.fromhex(message)).hex() == signature
    private.public_key().verify(bytes.fromhex(signature), bytes.fromhex(message))
    tampered = bytearray(bytes.fromhex(signature))
    tampered[0] ^= 1
    with pytest.raises(InvalidSignature):
        private.public_key().verify(bytes(tampered), bytes.fromhex(message))


def test_rfc8032_1023_byte_message_is_the_published_one():
    assert len(bytes.fromhex(RFC8032_TESTS[3][3])) == 1023


def test_pem_round_trips():
    for key in (keys.generate_rsa(), keys.generate_ed25519()):
        pem = keys.private_key_to_pem(key)
        assert pem.startswith("-----BEGIN PRIVATE KEY-----")
        loaded = keys.load_private_key(pem)
        assert keys.public_key_to_pem(loaded.public_key()) == keys.public_key_to_pem(key.public_key())
        assert keys.load_private_key(pem.encode()).public_key() == key.public_key()
        pub_pem = keys.public_key_to_pem(key.public_key())
        assert pub_pem.startswith("-----BEGIN PUBLIC KEY-----")
        assert keys.load_public_key(pub_pem) == key.public_key()


def test_generate_rsa_is_2048_bits():
    assert keys.generate_rsa().key_size == 2048


def test_loads_rfc9421_appendix_keys():
    # B.1.1 is PKCS#1 ("RSA PRIVATE KEY"), B.1.4 is PKCS#8.
    rsa_key = keys.load_private_key(RFC9421_RSA_PRIVATE)
    assert isinstance(rsa_key, rsa.RSAPrivateKey) and rsa_key.key_size == 2048
    ed_key = keys.load_private_key(RFC9421_ED25519_PRIVATE)
    assert ed_key.public_key() == keys.load_public_key(RFC9421_ED25519_PUBLIC)


def test_rejects_other_key_types_and_garbage():
    p256 = ec.generate_private_key(ec.SECP256R1())
    from cryptography.hazmat.primitives import serialization

    pem = p256.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyFormatError, match="unsupported private key type"):
        keys.load_private_key(pem)
    with pytest.raises(KeyFormatError, match="unsupported public key type"):
        keys.load_public_key(
            p256.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    with pytest.raises(KeyFormatError):
        keys.load_private_key("not a key")
    with pytest.raises(KeyFormatError):
        keys.load_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


def test_multikey_known_answer_from_vc_di_eddsa():
    # W3C vc-di-eddsa test key pair: the secret and public Multikeys must belong together.
    private = keys.multibase_to_ed25519_private("z3u2en7t5LR2WtQH5PfFqMqwVHBeXouLzo6haApm8XHqvjxq")
    assert keys.ed25519_to_multibase(private.public_key()) == "z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2"
    decoded = keys.multibase_to_ed25519("z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2")
    assert decoded == private.public_key()


def test_multikey_round_trip_and_prefix():
    for _ in range(20):
        pub = keys.generate_ed25519().public_key()
        encoded = keys.ed25519_to_multibase(pub)
        assert encoded.startswith("z6Mk")
        assert keys.multibase_to_ed25519(encoded) == pub


@pytest.mark.parametrize(
    "value",
    [
        "",
        "f6Mk",  # hex multibase, not base58btc
        "z0OIl",  # characters outside the base58 alphabet
        "z" + keys.base58btc_encode(b"\x12\x05" + bytes(32)),  # RSA multicodec, not Ed25519
        "z" + keys.base58btc_encode(b"\xed\x01" + bytes(31)),  # one byte short
    ],
)
def test_multikey_rejects_bad_values(value):
    with pytest.raises(KeyFormatError):
        keys.multibase_to_ed25519(value)


def test_base58_leading_zeros():
    assert keys.base58btc_encode(b"\0\0\1") == "112"
    assert keys.base58btc_decode("112") == b"\0\0\1"
    assert keys.base58btc_decode("") == b""


def test_fingerprint_is_sha256_of_spki():
    import hashlib

    from cryptography.hazmat.primitives import serialization

    pub = keys.load_public_key(RFC9421_ED25519_PUBLIC)
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    expected = base64.b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
    assert keys.fingerprint(pub) == f"SHA256:{expected}"
    assert keys.fingerprint(keys.generate_rsa().public_key()) != keys.fingerprint(pub)


def test_key_ids_and_documents():
    actor = "https://halles.example/actor"
    assert keys.main_key_id(actor) == "https://halles.example/actor#main-key"
    assert keys.ed25519_key_id(actor) == "https://halles.example/actor#ed25519-key"
    with pytest.raises(ValueError):
        keys.main_key_id(actor + "#me")
    ed = keys.generate_ed25519().public_key()
    doc = keys.multikey_document(keys.ed25519_key_id(actor), actor, ed)
    assert doc == {
        "id": actor + "#ed25519-key",
        "type": "Multikey",
        "controller": actor,
        "publicKeyMultibase": keys.ed25519_to_multibase(ed),
    }
    rsa_pub = keys.generate_rsa().public_key()
    assert keys.public_key_document(keys.main_key_id(actor), actor, rsa_pub)["publicKeyPem"].startswith(
        "-----BEGIN PUBLIC KEY-----"
    )


def test_rotation_grace():
    retired = datetime(2025, 3, 1, 12, tzinfo=UTC)
    pub = keys.generate_ed25519().public_key()
    record = keys.KeyRecord("https://a.example/actor#k", pub, "https://a.example/actor", retired_at=retired)
    assert record.is_usable(retired)
    assert record.is_usable(retired + keys.ROTATION_GRACE)
    assert not record.is_usable(retired + keys.ROTATION_GRACE + timedelta(seconds=1))
    assert record.is_usable(retired + timedelta(hours=2), grace=timedelta(hours=3))
    assert keys.KeyRecord("k", pub, "o").is_usable(datetime(2999, 1, 1, tzinfo=UTC))
    # A request signed just before the rotation must still verify when it arrives late.
    assert keys.ROTATION_GRACE > MAX_SIGNATURE_AGE + MAX_CLOCK_SKEW
    assert keys.ResolvedKey is keys.KeyRecord


def test_resolve_key_refresh_support():
    pub = keys.generate_ed25519().public_key()
    calls = []

    def with_refresh(key_id, refresh=False):
        calls.append(refresh)
        return keys.KeyRecord(key_id, pub, "o")

    assert keys.resolve_key(with_refresh, "k", refresh=True) is not None
    assert calls == [True]
    # A resolver without a refresh parameter is never called with one.
    assert keys.resolve_key(lambda key_id: keys.KeyRecord(key_id, pub, "o"), "k", refresh=True) is None
    assert keys.resolve_key(lambda key_id: keys.KeyRecord(key_id, pub, "o"), "k") is not None
