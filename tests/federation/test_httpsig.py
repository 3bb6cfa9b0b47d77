"""HTTP signatures: RFC 9421 and draft-cavage vectors, cross-checks, round trips and tampering."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from requests.structures import CaseInsensitiveDict

from federation import httpsig, keys
from federation.httpsig import (
    CAVAGE,
    MAX_CLOCK_SKEW,
    MAX_SIGNATURE_AGE,
    RFC9421,
    SignedAuth,
    Signer,
    cavage_signing_string,
    post_signed,
    rfc9421_signature_base,
    sign_request,
    verify_raw,
    verify_request,
)

from . import vectors
from .local_server import Reply, local_server

NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
ACTOR = "https://alice.example/actor"
RSA_KEY = keys.generate_rsa()
ED_KEY = keys.generate_ed25519()
OTHER_RSA = keys.generate_rsa()
INBOX = "https://bob.example/inbox"
BODY = b'{"type":"Create","actor":"https://alice.example/actor"}'


MAIN_KEY = keys.main_key_id(ACTOR)


def resolver(private_key, key_id=MAIN_KEY, owner=ACTOR, **extra):
    record = keys.KeyRecord(key_id, private_key.public_key(), owner, **extra)

    def resolve(requested, refresh=False):
        return record if requested == key_id else None

    return resolve


def signed(flavour, private_key=RSA_KEY, *, method="POST", url=INBOX, body=BODY, now=NOW, headers=None):
    headers = dict(headers or {"Content-Type": "application/activity+json"})
    headers.update(
        sign_request(method, url, headers, body, private_key, keys.main_key_id(ACTOR), flavour=flavour, now=now)
    )
    return headers


# --- published vectors --------------------------------------------------------------------------


def rfc9421_b26_headers():
    return {
        **vectors.RFC9421_REQUEST_HEADERS,
        "Signature-Input": vectors.RFC9421_B26_SIGNATURE_INPUT,
        "Signature": vectors.RFC9421_B26_SIGNATURE,
    }


def test_rfc9421_b26_ed25519_signature_base_and_published_signature():
    base = rfc9421_signature_base("POST", vectors.RFC9421_REQUEST_URL, rfc9421_b26_headers())
    assert base == vectors.RFC9421_B26_BASE
    public = keys.load_public_key(vectors.RFC9421_ED25519_PUBLIC)
    signature = base64.b64decode(vectors.RFC9421_B26_SIGNATURE.split(":")[1])
    assert verify_raw(public, base.encode(), signature)
    # Ed25519 is deterministic: the B.1.4 key must produce exactly the published bytes.
    assert keys.load_private_key(vectors.RFC9421_ED25519_PRIVATE).sign(base.encode()) == signature
    assert not verify_raw(public, base.replace("/foo", "/bar").encode(), signature)


def test_rfc9421_b26_is_valid_but_does_not_satisfy_our_coverage_policy():
    # B.2.6 covers @path without @query, and not the body: a request we must not trust.
    resolve = resolver(keys.load_private_key(vectors.RFC9421_ED25519_PRIVATE), key_id="test-key-ed25519")
    result = verify_request(
        "POST",
        vectors.RFC9421_REQUEST_URL,
        rfc9421_b26_headers(),
        vectors.RFC9421_REQUEST_BODY,
        resolve,
        now=datetime.fromtimestamp(vectors.RFC9421_CREATED, UTC),
    )
    assert not result.ok and result.reason == "missing covered component: @query"


def test_rfc9421_rsa_v1_5_known_answer_from_sign_request():
    private = keys.load_private_key(vectors.RFC9421_RSA_PRIVATE)
    created = datetime.fromtimestamp(vectors.RFC9421_CREATED, UTC)
    added = sign_request(
        "POST",
        vectors.RFC9421_REQUEST_URL,
        {"Content-Type": "application/json"},
        vectors.RFC9421_REQUEST_BODY,
        private,
        "test-key-rsa",
        flavour=RFC9421,
        now=created,
    )
    assert added["Content-Digest"] == "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    assert added["Date"] == "Tue, 20 Apr 2021 02:07:53 GMT"
    assert added["Signature-Input"] == (
        'sig1=("@method" "@target-uri" "@authority" "content-digest");created=1618884473;keyid="test-key-rsa"'
        ';alg="rsa-v1_5-sha256"'
    )
    # Computed independently with `openssl dgst -sha256 -sign` over the same signature base.
    assert added["Signature"] == (
        "sig1=:bBvys5WkpMvqbm3X/EQC3Jw0ds6UejXWt2sEhJD0JvDRQHLIMglM6r81Dr8que+iT2f5Rdhb6XH8Nq73psCqxeh4gVMOexZw"
        "/Tje+JgVUU1vuGGQdkby2CjngWyGGAGGvcFleplYPL+Sm/2JRxtHDeADbWpZ0WVUtPfNS8gEMj4dkXubLZF4OgyWIP7/csGKhCLZ"
        "RhKRspQt2Q0Jcc+2zFNcUlxr3eDlL/J/FUsZ6ZTdbhNw7Lut6dMB71j/VW9qThsOOyfL95LqakC5vCgLml5S+pz/1G9WicDohK2K"
        "ZRAdlERJYIUGOttPlfbQOurAul2KRtYfmhCrb9Sstk/2dw==:"
    )
    resolve = resolver(private, key_id="test-key-rsa")
    result = verify_request(
        "POST",
        vectors.RFC9421_REQUEST_URL,
        {**vectors.RFC9421_REQUEST_HEADERS, **added},
        vectors.RFC9421_REQUEST_BODY,
        resolve,
        now=created,
    )
    assert result.ok, result.reason
    assert (result.flavour, result.algorithm, result.key_id) == (RFC9421, "rsa-v1_5-sha256", "test-key-rsa")


def test_rfc9421_rsa_v1_5_known_answer_with_the_rfc_sha512_content_digest():
    headers = {
        **vectors.RFC9421_REQUEST_HEADERS,
        "Signature-Input": vectors.RFC9421_RSA_V15_SIGNATURE_INPUT,
        "Signature": f"sig1=:{vectors.RFC9421_RSA_V15_SIGNATURE}:",
    }
    assert rfc9421_signature_base("POST", vectors.RFC9421_REQUEST_URL, headers) == vectors.RFC9421_RSA_V15_BASE
    private = keys.load_private_key(vectors.RFC9421_RSA_PRIVATE)
    assert private.public_key() == keys.load_public_key(vectors.RFC9421_RSA_PUBLIC)
    signature = private.sign(vectors.RFC9421_RSA_V15_BASE.encode(), padding.PKCS1v15(), hashes.SHA256())
    assert base64.b64encode(signature).decode() == vectors.RFC9421_RSA_V15_SIGNATURE
    now = datetime.fromtimestamp(vectors.RFC9421_CREATED + 60, UTC)
    resolve = resolver(private, key_id="test-key-rsa")
    result = verify_request(
        "POST", vectors.RFC9421_REQUEST_URL, headers, vectors.RFC9421_REQUEST_BODY, resolve, now=now
    )
    assert result.ok, result.reason  # the sha-512 Content-Digest of the RFC matches the body
    result = verify_request("POST", vectors.RFC9421_REQUEST_URL, headers, b'{"hello": "World"}', resolve, now=now)
    assert result.reason == "digest mismatch"


@pytest.mark.parametrize("names,signature", vectors.CAVAGE_TESTS, ids=["C.2 basic", "C.3 all headers"])
def test_draft_cavage_appendix_c_vectors(names, signature):
    public = keys.load_public_key(vectors.CAVAGE_PUBLIC)
    message = cavage_signing_string("POST", vectors.CAVAGE_URL, vectors.CAVAGE_HEADERS, names.split())
    assert message.startswith("(request-target): post /foo?param=value&pet=dog\nhost: example.com\n")
    assert verify_raw(public, message.encode(), base64.b64decode(signature))
    assert not verify_raw(public, message.replace("pet=dog", "pet=cat").encode(), base64.b64decode(signature))


def test_draft_cavage_vector_key_is_too_short_for_us():
    names, signature = vectors.CAVAGE_TESTS[1]
    header = f'keyId="Test",algorithm="rsa-sha256",headers="{names}",signature="{signature}"'
    public = keys.load_public_key(vectors.CAVAGE_PUBLIC)

    def resolve(key_id, refresh=False):
        return keys.KeyRecord(key_id, public, "https://example.com/actor")

    result = verify_request(
        "POST",
        vectors.CAVAGE_URL,
        {**vectors.CAVAGE_HEADERS, "Signature": header},
        vectors.CAVAGE_BODY,
        resolve,
        now=datetime(2014, 1, 5, 21, 31, 40, tzinfo=UTC),
    )
    assert not result.ok and result.reason == "key too short"
    assert result.flavour == CAVAGE and result.key_id == "Test"


# --- cross-check with the http-message-signatures package ---------------------------------------


def _hms():
    return pytest.importorskip("http_message_signatures")


@pytest.mark.parametrize("private_key", [RSA_KEY, ED_KEY], ids=["rsa", "ed25519"])
def test_our_rfc9421_signatures_verify_with_http_message_signatures(private_key):
    hms = _hms()
    now = datetime.now(UTC)  # the package checks created against the real clock
    headers = signed(RFC9421, private_key, now=now)
    algorithm = hms.algorithms.ED25519 if private_key is ED_KEY else hms.algorithms.RSA_V1_5_SHA256
    verifier = hms.HTTPMessageVerifier(
        signature_algorithm=algorithm,
        key_resolver=hms.MappingKeyResolver(
            public_keys={keys.main_key_id(ACTOR): private_key.public_key()}, private_keys={}
        ),
    )
    message = SimpleNamespace(method="POST", url=INBOX, headers=CaseInsensitiveDict(headers))
    (result,) = verifier.verify(message, body=BODY, require_components=("@method", "@target-uri", "@authority"))
    assert result.parameters["keyid"] == keys.main_key_id(ACTOR)
    tampered = SimpleNamespace(method="POST", url=INBOX + "x", headers=CaseInsensitiveDict(headers))
    with pytest.raises(hms.InvalidSignature):
        verifier.verify(tampered, body=BODY)


@pytest.mark.parametrize("private_key", [RSA_KEY, ED_KEY], ids=["rsa", "ed25519"])
def test_http_message_signatures_signatures_verify_with_ours(private_key):
    hms = _hms()
    now = datetime.now(UTC).replace(microsecond=0)
    algorithm = hms.algorithms.ED25519 if private_key is ED_KEY else hms.algorithms.RSA_V1_5_SHA256
    signer = hms.HTTPMessageSigner(
        signature_algorithm=algorithm,
        key_resolver=hms.MappingKeyResolver(public_keys={}, private_keys={keys.main_key_id(ACTOR): private_key}),
    )
    message = SimpleNamespace(
        method="POST", url=INBOX + "?page=2", headers=CaseInsensitiveDict({"Content-Type": "application/activity+json"})
    )
    signer.sign(
        message,
        key_id=keys.main_key_id(ACTOR),
        created=now,
        body=BODY,
        covered_component_ids=("@method", "@authority", "@target-uri"),
    )
    headers = dict(message.headers)
    assert "content-digest" in headers["Signature-Input"]
    result = verify_request("POST", INBOX + "?page=2", headers, BODY, resolver(private_key), now=now)
    assert result.ok, result.reason
    assert result.algorithm == algorithm.algorithm_id
    assert verify_request("POST", INBOX + "?page=3", headers, BODY, resolver(private_key), now=now).reason == (
        "signature mismatch"
    )


# --- round trips and tampering, both flavours and both key types --------------------------------

CASES = [(RFC9421, RSA_KEY), (RFC9421, ED_KEY), (CAVAGE, RSA_KEY), (CAVAGE, ED_KEY)]
CASE_IDS = ["rfc9421-rsa", "rfc9421-ed25519", "cavage-rsa", "cavage-ed25519"]


@pytest.mark.parametrize("flavour,key", CASES, ids=CASE_IDS)
def test_round_trip(flavour, key):
    headers = signed(flavour, key)
    result = verify_request("POST", INBOX, headers, BODY, resolver(key), now=NOW)
    assert result.ok, result.reason
    assert result.owner == ACTOR and result.key_id == keys.main_key_id(ACTOR) and result.flavour == flavour
    expected = {
        (RFC9421, RSA_KEY): "rsa-v1_5-sha256",
        (RFC9421, ED_KEY): "ed25519",
        (CAVAGE, RSA_KEY): "rsa-sha256",
        (CAVAGE, ED_KEY): "hs2019",
    }[(flavour, key)]
    assert result.algorithm == expected
    assert headers["Date"] == "Thu, 01 May 2025 12:00:00 GMT"
    if flavour == RFC9421:
        assert headers["Content-Digest"] == httpsig.content_digest(BODY)
        assert headers["Signature-Input"].startswith('sig1=("@method" "@target-uri" "@authority" "content-digest")')
    else:
        assert headers["Digest"] == httpsig.legacy_digest(BODY)
        assert 'headers="(request-target) host date digest"' in headers["Signature"]
        assert headers["Host"] == "bob.example"


@pytest.mark.parametrize("flavour,key", CASES, ids=CASE_IDS)
def test_get_without_body(flavour, key):
    headers = signed(flavour, key, method="GET", url="https://bob.example/outbox?page=2", body=None, headers={})
    assert "Digest" not in headers and "Content-Digest" not in headers
    result = verify_request("GET", "https://bob.example/outbox?page=2", headers, b"", resolver(key), now=NOW)
    assert result.ok, result.reason
    result = verify_request("GET", "https://bob.example/outbox?page=3", headers, b"", resolver(key), now=NOW)
    assert result.reason == "signature mismatch"


@pytest.mark.parametrize("flavour,key", CASES, ids=CASE_IDS)
def test_changed_body(flavour, key):
    headers = signed(flavour, key)
    other = BODY.replace(b"Create", b"Delete")
    assert verify_request("POST", INBOX, headers, other, resolver(key), now=NOW).reason == "digest mismatch"
    # With the digest recomputed for the new body, the signature no longer matches.
    if flavour == RFC9421:
        headers["Content-Digest"] = httpsig.content_digest(other)
    else:
        headers["Digest"] = httpsig.legacy_digest(other)
    assert verify_request("POST", INBOX, headers, other, resolver(key), now=NOW).reason == "signature mismatch"


@pytest.mark.parametrize("flavour,key", CASES, ids=CASE_IDS)
def test_changed_request_line_or_header(flavour, key):
    headers = signed(flavour, key)
    assert verify_request("PUT", INBOX, headers, BODY, resolver(key), now=NOW).reason == "signature mismatch"
    assert verify_request("POST", INBOX + "2", headers, BODY, resolver(key), now=NOW).reason == "signature mismatch"
    if flavour == CAVAGE:
        moved = {**headers, "Date": "Thu, 01 May 2025 12:00:01 GMT"}
        assert verify_request("POST", INBOX, moved, BODY, resolver(key), now=NOW).reason == "signature mismatch"
        host = {**headers, "Host": "evil.example"}
        assert verify_request("POST", INBOX, host, BODY, resolver(key), now=NOW).reason == "signature mismatch"
    else:
        other_host = "https://evil.example/inbox"
        assert verify_request("POST", other_host, headers, BODY, resolver(key), now=NOW).reason == (
            "signature mismatch"
        )


@pytest.mark.parametrize("flavour,key", CASES, ids=CASE_IDS)
def test_wrong_key(flavour, key):
    headers = signed(flavour, key)
    impostor = keys.generate_ed25519() if key is ED_KEY else OTHER_RSA
    assert verify_request("POST", INBOX, headers, BODY, resolver(impostor), now=NOW).reason == "signature mismatch"


@pytest.mark.parametrize("flavour,key", CASES, ids=CASE_IDS)
def test_time_windows(flavour, key):
    headers = signed(flavour, key)
    resolve = resolver(key)
    assert verify_request("POST", INBOX, headers, BODY, resolve, now=NOW + MAX_SIGNATURE_AGE).ok
    late = NOW + MAX_SIGNATURE_AGE + timedelta(seconds=1)
    assert verify_request("POST", INBOX, headers, BODY, resolve, now=late).reason == "signature expired"
    assert verify_request("POST", INBOX, headers, BODY, resolve, now=NOW - MAX_CLOCK_SKEW).ok
    early = NOW - MAX_CLOCK_SKEW - timedelta(seconds=1)
    assert verify_request("POST", INBOX, headers, BODY, resolve, now=early).reason == "signature from the future"


def test_named_windows():
    assert MAX_CLOCK_SKEW == timedelta(hours=1)
    assert MAX_SIGNATURE_AGE == timedelta(hours=12)


@pytest.mark.parametrize(
    "old,new",
    [
        ('alg="rsa-v1_5-sha256"', 'alg="ed25519"'),
        ('alg="rsa-v1_5-sha256"', 'alg="rsa-pss-sha512"'),
        ('alg="rsa-v1_5-sha256"', 'alg="hmac-sha256"'),
    ],
)
def test_rfc9421_replaced_algorithm(old, new):
    headers = signed(RFC9421, RSA_KEY)
    headers["Signature-Input"] = headers["Signature-Input"].replace(old, new)
    assert verify_request("POST", INBOX, headers, BODY, resolver(RSA_KEY), now=NOW).reason == "algorithm not allowed"


def test_rfc9421_key_type_must_agree_with_alg():
    headers = signed(RFC9421, ED_KEY)  # alg="ed25519"
    assert verify_request("POST", INBOX, headers, BODY, resolver(RSA_KEY), now=NOW).reason == "algorithm not allowed"


def test_rfc9421_without_alg_derives_it_from_the_key():
    for key in (RSA_KEY, ED_KEY):
        headers = signed(RFC9421, key)
        base = rfc9421_signature_base("POST", INBOX, headers).replace(
            re.search(r';alg="[^"]+"', headers["Signature-Input"]).group(), ""
        )
        headers["Signature-Input"] = re.sub(r';alg="[^"]+"', "", headers["Signature-Input"])
        raw = key.sign(base.encode()) if key is ED_KEY else key.sign(base.encode(), padding.PKCS1v15(), hashes.SHA256())
        headers["Signature"] = f"sig1=:{base64.b64encode(raw).decode()}:"
        result = verify_request("POST", INBOX, headers, BODY, resolver(key), now=NOW)
        assert result.ok, result.reason


@pytest.mark.parametrize(
    "old,new,key",
    [
        ('algorithm="rsa-sha256"', 'algorithm="hmac-sha256"', RSA_KEY),
        ('algorithm="rsa-sha256"', 'algorithm="rsa-sha1"', RSA_KEY),
        ('algorithm="hs2019"', 'algorithm="rsa-sha256"', ED_KEY),
    ],
)
def test_cavage_replaced_algorithm(old, new, key):
    headers = signed(CAVAGE, key)
    headers["Signature"] = headers["Signature"].replace(old, new)
    assert verify_request("POST", INBOX, headers, BODY, resolver(key), now=NOW).reason == "algorithm not allowed"


def test_cavage_without_algorithm_is_hs2019():
    headers = signed(CAVAGE, RSA_KEY)
    headers["Signature"] = headers["Signature"].replace('algorithm="rsa-sha256",', "")
    result = verify_request("POST", INBOX, headers, BODY, resolver(RSA_KEY), now=NOW)
    assert result.ok and result.algorithm == "hs2019"


@pytest.mark.parametrize(
    "component",
    ['"@method" ', '"@target-uri" ', ' "content-digest"'],
)
def test_rfc9421_missing_covered_component(component):
    headers = signed(RFC9421, RSA_KEY)
    headers["Signature-Input"] = headers["Signature-Input"].replace(component, "")
    reason = verify_request("POST", INBOX, headers, BODY, resolver(RSA_KEY), now=NOW).reason
    assert reason == f"missing covered component: {component.strip().strip(chr(34))}"


def test_rfc9421_covered_digest_header_missing():
    headers = signed(RFC9421, RSA_KEY)
    del headers["Content-Digest"]
    assert verify_request("POST", INBOX, headers, BODY, resolver(RSA_KEY), now=NOW).reason == (
        "missing header: content-digest"
    )


@pytest.mark.parametrize("name", ["(request-target)", "host", "date", "digest"])
def test_cavage_missing_covered_component(name):
    headers = signed(CAVAGE, RSA_KEY)
    headers["Signature"] = re.sub(
        r'headers="([^"]*)"',
        lambda m: 'headers="' + " ".join(h for h in m.group(1).split() if h != name) + '"',
        headers["Signature"],
    )
    reason = verify_request("POST", INBOX, headers, BODY, resolver(RSA_KEY), now=NOW).reason
    assert reason == f"missing covered component: {name}"


def test_missing_and_malformed_signatures():
    assert verify_request("POST", INBOX, {}, BODY, resolver(RSA_KEY), now=NOW).reason == "missing signature"
    headers = signed(RFC9421, RSA_KEY)
    broken = {**headers, "Signature-Input": 'sig1=("@method"'}
    assert verify_request("POST", INBOX, broken, BODY, resolver(RSA_KEY), now=NOW).reason == "malformed signature"
    unlabelled = {**headers, "Signature": "other=:AAAA:"}
    assert verify_request("POST", INBOX, unlabelled, BODY, resolver(RSA_KEY), now=NOW).reason == "missing signature"
    cavage = signed(CAVAGE, RSA_KEY)
    assert (
        verify_request("POST", INBOX, {**cavage, "Signature": "keyId=nope"}, BODY, resolver(RSA_KEY), now=NOW).reason
        == "malformed signature"
    )
    assert (
        verify_request(
            "POST",
            INBOX,
            {**cavage, "Signature": cavage["Signature"].replace('signature="', 'signature="!')},
            BODY,
            resolver(RSA_KEY),
            now=NOW,
        ).reason
        == "malformed signature"
    )
    assert (
        verify_request("POST", INBOX, {**cavage, "Date": "yesterday"}, BODY, resolver(RSA_KEY), now=NOW).reason
        == "invalid date"
    )


@pytest.mark.parametrize("flavour", [RFC9421, CAVAGE])
def test_unknown_key(flavour):
    headers = signed(flavour, RSA_KEY)
    result = verify_request("POST", INBOX, headers, BODY, lambda key_id, refresh=False: None, now=NOW)
    assert result.reason == "unknown key" and result.key_id == keys.main_key_id(ACTOR)


@pytest.mark.parametrize("flavour", [RFC9421, CAVAGE])
def test_key_rotation_refetches_once(flavour):
    headers = signed(flavour, RSA_KEY)
    calls = []

    def rotating(key_id, refresh=False):
        calls.append(refresh)
        key = RSA_KEY if refresh else OTHER_RSA  # the cache still holds the key before rotation
        return keys.KeyRecord(key_id, key.public_key(), ACTOR)

    assert verify_request("POST", INBOX, headers, BODY, rotating, now=NOW).ok
    assert calls == [False, True]
    calls.clear()
    stubborn = resolver(OTHER_RSA)
    assert verify_request("POST", INBOX, headers, BODY, stubborn, now=NOW).reason == "signature mismatch"
    # A resolver without a refresh parameter is simply not retried.
    assert (
        verify_request(
            "POST", INBOX, headers, BODY, lambda key_id: keys.KeyRecord(key_id, OTHER_RSA.public_key(), ACTOR), now=NOW
        ).reason
        == "signature mismatch"
    )


def test_retired_key():
    headers = signed(RFC9421, RSA_KEY)
    within = resolver(RSA_KEY, retired_at=NOW - timedelta(hours=2))
    assert verify_request("POST", INBOX, headers, BODY, within, now=NOW).ok
    past = resolver(RSA_KEY, retired_at=NOW - keys.ROTATION_GRACE - timedelta(minutes=1))
    assert verify_request("POST", INBOX, headers, BODY, past, now=NOW).reason == "key retired"


def test_short_rsa_keys_are_refused():
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    headers = signed(RFC9421, weak)
    assert verify_request("POST", INBOX, headers, BODY, resolver(weak), now=NOW).reason == "key too short"


def test_headers_in_any_case_and_as_pairs_and_authorization_form():
    headers = signed(CAVAGE, RSA_KEY)
    lowered = {name.lower(): value for name, value in headers.items()}
    assert verify_request("post", INBOX, lowered, BODY, resolver(RSA_KEY), now=NOW).ok
    pairs = [(name.upper(), value) for name, value in headers.items()]
    assert verify_request("POST", INBOX, pairs, BODY, resolver(RSA_KEY), now=NOW).ok
    authorization = {k: v for k, v in headers.items() if k != "Signature"}
    authorization["Authorization"] = "Signature " + headers["Signature"]
    assert verify_request("POST", INBOX, authorization, BODY, resolver(RSA_KEY), now=NOW).ok


def test_cavage_signs_the_query_string():
    url = "https://bob.example/inbox?x=1&y=%C3%A9"
    headers = signed(CAVAGE, RSA_KEY, url=url)
    message = cavage_signing_string("POST", url, headers, ["(request-target)", "host"])
    assert message == "(request-target): post /inbox?x=1&y=%C3%A9\nhost: bob.example"
    assert verify_request("POST", url, headers, BODY, resolver(RSA_KEY), now=NOW).ok


def test_non_default_port_is_part_of_the_authority():
    url = "http://127.0.0.1:8123/inbox"
    for flavour in (RFC9421, CAVAGE):
        headers = signed(flavour, RSA_KEY, url=url)
        assert verify_request("POST", url, headers, BODY, resolver(RSA_KEY), now=NOW).ok
    assert signed(CAVAGE, RSA_KEY, url=url)["Host"] == "127.0.0.1:8123"
    assert "127.0.0.1:8123" in rfc9421_signature_base("POST", url, signed(RFC9421, RSA_KEY, url=url))


def test_sign_request_argument_checks():
    with pytest.raises(ValueError, match="timezone-aware"):
        sign_request("POST", INBOX, {}, BODY, RSA_KEY, "k", flavour=RFC9421, now=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="flavour"):
        sign_request("POST", INBOX, {}, BODY, RSA_KEY, "k", flavour="jws", now=NOW)
    with pytest.raises(ValueError, match="quotes"):
        sign_request("POST", INBOX, {}, BODY, RSA_KEY, 'k"', flavour=CAVAGE, now=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_request("POST", INBOX, {}, BODY, resolver(RSA_KEY), now=datetime(2025, 1, 1))


# --- requests integration: SignedAuth and the double knock over real HTTP -----------------------


def inbox_accepting(*flavours, key=RSA_KEY):
    """An inbox handler that verifies signatures and only accepts the given flavours."""

    def handle(request):
        url = "http://" + request.headers["Host"] + request.path
        result = verify_request(
            request.method, url, request.headers, request.body, resolver(key), now=datetime.now(UTC)
        )
        if not result.ok or result.flavour not in flavours:
            return Reply(401, {"Content-Type": "text/plain"}, (result.reason or "flavour refused").encode())
        return Reply(202, {}, b"")

    return handle


def test_post_signed_uses_the_preferred_flavour():
    with local_server() as server, requests.Session() as session:
        server.routes["/inbox"] = inbox_accepting(RFC9421, CAVAGE)
        result = post_signed(
            session,
            server.base_url + "/inbox",
            {"type": "Follow"},
            Signer(keys.main_key_id(ACTOR), RSA_KEY),
            clock=lambda: datetime.now(UTC),
        )
        assert result.response.status_code == 202 and result.flavour == RFC9421 and not result.knocked_twice
        assert len(server.seen) == 1 and server.seen[0].body == b'{"type":"Follow"}'


@pytest.mark.parametrize("accepted,preferred", [(CAVAGE, RFC9421), (RFC9421, CAVAGE)])
def test_post_signed_double_knock(accepted, preferred):
    with local_server() as server, requests.Session() as session:
        server.routes["/inbox"] = inbox_accepting(accepted)
        result = post_signed(
            session,
            server.base_url + "/inbox",
            BODY,
            Signer(keys.main_key_id(ACTOR), RSA_KEY),
            preferred_flavour=preferred,
            clock=lambda: datetime.now(UTC),
        )
        assert result.response.status_code == 202
        assert result.flavour == accepted and result.knocked_twice
        assert [httpsig.flavour_of(seen.headers) for seen in server.seen] == [preferred, accepted]
        assert server.seen[0].body == server.seen[1].body == BODY


def test_post_signed_when_both_flavours_are_refused():
    with local_server() as server, requests.Session() as session:
        server.routes["/inbox"] = lambda request: Reply(403, {}, b"blocked")
        result = post_signed(
            session,
            server.base_url + "/inbox",
            BODY,
            Signer(keys.main_key_id(ACTOR), RSA_KEY),
            clock=lambda: datetime.now(UTC),
        )
        assert result.response.status_code == 403 and result.flavour is None
        assert len(server.seen) == 2  # knocked twice, then gave up


def test_signed_auth_reports_the_learned_flavour_and_can_sign_gets():
    learned = []
    with local_server() as server, requests.Session() as session:
        server.routes["/outbox"] = inbox_accepting(CAVAGE, key=ED_KEY)
        auth = SignedAuth(
            Signer(keys.main_key_id(ACTOR), ED_KEY),
            clock=lambda: datetime.now(UTC),
            double_knock=True,
            on_flavour_learned=lambda origin, flavour: learned.append((origin, flavour)),
        )
        response = session.get(server.base_url + "/outbox", auth=auth, timeout=5)
        assert response.status_code == 202
        assert learned == [(server.base_url, CAVAGE)]
        # Without double_knock the first refusal is final.
        single = SignedAuth(Signer(keys.main_key_id(ACTOR), ED_KEY), clock=lambda: datetime.now(UTC))
        assert session.get(server.base_url + "/outbox", auth=single, timeout=5).status_code == 401


def test_signed_auth_encodes_str_bodies_as_utf8():
    with local_server() as server, requests.Session() as session:
        server.routes["/inbox"] = inbox_accepting(RFC9421)
        auth = SignedAuth(Signer(keys.main_key_id(ACTOR), RSA_KEY), clock=lambda: datetime.now(UTC))
        response = session.post(server.base_url + "/inbox", data='{"name":"Débat"}', auth=auth, timeout=5)
        assert response.status_code == 202
        assert server.seen[0].body == '{"name":"Débat"}'.encode()
