"""FEP-8b32 / eddsa-jcs-2022 proofs: W3C and FEP vectors, round trips, and every tampering."""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation import keys
from federation.errors import UnsupportedKeyError
from federation.jcs import canonicalize
from federation.proofs import NOT_ORIGIN, hash_data, sign_document, verify_document

from . import vectors

NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
ALICE = "https://alice.example/actor"
BOB = "https://bob.example/actor"
ALICE_KEY = keys.generate_ed25519()
BOB_KEY = keys.generate_ed25519()


def resolver_for(*records: keys.KeyRecord):
    table = {record.key_id: record for record in records}

    def resolve(key_id, refresh=False):
        return table.get(key_id)

    return resolve


ALICE_RECORD = keys.KeyRecord(keys.ed25519_key_id(ALICE), ALICE_KEY.public_key(), ALICE)
BOB_RECORD = keys.KeyRecord(keys.ed25519_key_id(BOB), BOB_KEY.public_key(), BOB)
RESOLVE = resolver_for(ALICE_RECORD, BOB_RECORD)


def event(**extra):
    return {
        "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/data-integrity/v2"],
        "id": "https://alice.example/events/1",
        "type": "Event",
        "name": "Débat citoyen à Belleville",
        "attributedTo": ALICE,
        "startTime": "2025-06-01T18:00:00+02:00",
        "tag": [{"type": "Hashtag", "name": "#démocratie"}],
        **extra,
    }


def signed_event(**extra):
    return sign_document(event(**extra), ALICE_KEY, keys.ed25519_key_id(ALICE), created=NOW - timedelta(minutes=5))


# --- published vectors --------------------------------------------------------------------------


def vc_resolver(key_id, refresh=False):
    public = keys.multibase_to_ed25519(vectors.VC_PUBLIC_MULTIBASE)
    return keys.KeyRecord(key_id, public, "did:key:" + vectors.VC_PUBLIC_MULTIBASE)


def test_w3c_eddsa_jcs_2022_intermediate_values():
    assert canonicalize(vectors.VC_UNSIGNED).decode() == vectors.VC_CANONICAL_DOCUMENT
    config = {
        "type": "DataIntegrityProof",
        "cryptosuite": "eddsa-jcs-2022",
        "created": vectors.VC_CREATED,
        "verificationMethod": vectors.VC_VERIFICATION_METHOD,
        "proofPurpose": "assertionMethod",
        "@context": vectors.VC_UNSIGNED["@context"],
    }
    assert canonicalize(config).decode() == vectors.VC_CANONICAL_PROOF_CONFIG
    data = hash_data(vectors.VC_UNSIGNED, config)
    assert data.hex() == vectors.VC_PROOF_CONFIG_HASH + vectors.VC_DOCUMENT_HASH
    assert hashlib.sha256(vectors.VC_CANONICAL_DOCUMENT.encode()).hexdigest() == vectors.VC_DOCUMENT_HASH


def test_w3c_eddsa_jcs_2022_signing_reproduces_the_published_proof():
    secret = keys.multibase_to_ed25519_private(vectors.VC_SECRET_MULTIBASE)
    created = datetime.fromisoformat(vectors.VC_CREATED)
    signed = sign_document(vectors.VC_UNSIGNED, secret, vectors.VC_VERIFICATION_METHOD, created=created)
    assert signed["proof"]["proofValue"] == vectors.VC_PROOF_VALUE
    assert keys.multibase_decode(vectors.VC_PROOF_VALUE).hex() == vectors.VC_SIGNATURE_HEX
    assert signed["proof"]["created"] == vectors.VC_CREATED


@pytest.mark.parametrize("with_context", [True, False], ids=["proof-with-@context", "proof-without-@context"])
def test_w3c_eddsa_jcs_2022_published_document_verifies(with_context):
    proof = {
        "type": "DataIntegrityProof",
        "cryptosuite": "eddsa-jcs-2022",
        "created": vectors.VC_CREATED,
        "verificationMethod": vectors.VC_VERIFICATION_METHOD,
        "proofPurpose": "assertionMethod",
        "proofValue": vectors.VC_PROOF_VALUE,
    }
    if with_context:  # the spec's signed example repeats the document's @context in the proof
        proof["@context"] = vectors.VC_UNSIGNED["@context"]
    document = {**vectors.VC_UNSIGNED, "proof": proof}
    result = verify_document(document, vc_resolver, now=NOW)
    assert result.ok, result.reason
    tampered = copy.deepcopy(document)
    tampered["credentialSubject"]["alumniOf"] = "Another School"
    assert verify_document(tampered, vc_resolver, now=NOW).reason == "signature mismatch"


def test_proof_context_must_be_a_prefix_of_the_document_context():
    document = {
        **vectors.VC_UNSIGNED,
        "proof": {
            "type": "DataIntegrityProof",
            "cryptosuite": "eddsa-jcs-2022",
            "created": vectors.VC_CREATED,
            "verificationMethod": vectors.VC_VERIFICATION_METHOD,
            "proofPurpose": "assertionMethod",
            "@context": ["https://www.w3.org/ns/activitystreams"],
            "proofValue": vectors.VC_PROOF_VALUE,
        },
    }
    assert verify_document(document, vc_resolver, now=NOW).reason == "proof context mismatch"


def test_fep_8b32_example_verifies():
    public = keys.multibase_to_ed25519(vectors.VC_PUBLIC_MULTIBASE)
    alice = "https://server.example/users/alice"
    resolve = resolver_for(keys.KeyRecord(alice + "#ed25519-key", public, alice))
    result = verify_document(vectors.FEP8B32_SIGNED, resolve, now=NOW, expected_origin=alice)
    assert result.ok, result.reason
    assert result.owner == alice
    tampered = copy.deepcopy(vectors.FEP8B32_SIGNED)
    tampered["object"]["content"] = "Goodbye world"
    assert verify_document(tampered, resolve, now=NOW).reason == "signature mismatch"


def test_we_sign_with_the_current_rule_not_the_fep_example_rule():
    # Same key, document and time as the FEP-8b32 example; the value differs because we put the
    # document's @context into the proof configuration (current W3C rule).
    secret = keys.multibase_to_ed25519_private(vectors.VC_SECRET_MULTIBASE)
    unsigned = {k: v for k, v in vectors.FEP8B32_SIGNED.items() if k != "proof"}
    signed = sign_document(
        unsigned,
        secret,
        "https://server.example/users/alice#ed25519-key",
        created=datetime(2023, 2, 24, 23, 36, 38, tzinfo=UTC),
    )
    proof = signed["proof"]
    assert proof["proofValue"] != vectors.FEP8B32_SIGNED["proof"]["proofValue"]
    config = {k: v for k, v in proof.items() if k != "proofValue"} | {"@context": unsigned["@context"]}
    secret.public_key().verify(keys.multibase_decode(proof["proofValue"]), hash_data(unsigned, config))


# --- round trips and tampering ------------------------------------------------------------------


def test_round_trip_and_shape():
    original = event()
    snapshot = copy.deepcopy(original)
    signed = sign_document(original, ALICE_KEY, keys.ed25519_key_id(ALICE), created=NOW.replace(microsecond=123456))
    assert original == snapshot, "the input document must not be modified"
    proof = signed["proof"]
    assert proof == {
        "type": "DataIntegrityProof",
        "cryptosuite": "eddsa-jcs-2022",
        "verificationMethod": "https://alice.example/actor#ed25519-key",
        "proofPurpose": "assertionMethod",
        "created": "2025-05-01T12:00:00Z",
        "proofValue": proof["proofValue"],
    }
    assert proof["proofValue"].startswith("z")
    result = verify_document(signed, RESOLVE, now=NOW, expected_origin="https://alice.example/events/1")
    assert result.ok and result.reason is None
    assert result.owner == ALICE and result.key_id == keys.ed25519_key_id(ALICE)


def test_created_is_written_in_utc_whole_seconds():
    paris = datetime(2025, 5, 1, 14, 0, 0, 999999, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    signed = sign_document(event(), ALICE_KEY, keys.ed25519_key_id(ALICE), created=paris)
    assert signed["proof"]["created"] == "2025-05-01T14:00:00Z"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d.__setitem__("name", "Autre débat"),
        lambda d: d["tag"][0].__setitem__("name", "#autre"),
        lambda d: d.__setitem__("extra", True),
        lambda d: d.__delitem__("startTime"),
        lambda d: d.__setitem__("@context", ["https://www.w3.org/ns/activitystreams"]),
        lambda d: d["proof"].__setitem__("created", "2025-05-01T11:56:00Z"),
        lambda d: d["proof"].__setitem__("proofValue", "z" + keys.base58btc_encode(bytes(64))),
    ],
    ids=["field", "nested", "added", "removed", "context", "created", "zero-signature"],
)
def test_tampered_documents_fail(tamper):
    signed = signed_event()
    tamper(signed)
    assert verify_document(signed, RESOLVE, now=NOW).reason == "signature mismatch"


def test_wrong_key_fails():
    signed = signed_event()
    wrong = resolver_for(keys.KeyRecord(keys.ed25519_key_id(ALICE), BOB_KEY.public_key(), ALICE))
    assert verify_document(signed, wrong, now=NOW).reason == "signature mismatch"


def test_verification_method_swapped_to_another_key_fails():
    signed = signed_event()
    signed["proof"]["verificationMethod"] = keys.ed25519_key_id(BOB)
    assert verify_document(signed, RESOLVE, now=NOW).reason == "signature mismatch"


def test_unknown_key_fails():
    assert verify_document(signed_event(), resolver_for(), now=NOW).reason == "unknown key"


def test_rsa_key_is_not_allowed():
    rsa_record = keys.KeyRecord(keys.ed25519_key_id(ALICE), keys.generate_rsa().public_key(), ALICE)
    assert verify_document(signed_event(), resolver_for(rsa_record), now=NOW).reason == "algorithm not allowed"


def test_future_dated_proof_fails_beyond_skew():
    future = sign_document(event(), ALICE_KEY, keys.ed25519_key_id(ALICE), created=NOW + timedelta(hours=2))
    assert verify_document(future, RESOLVE, now=NOW).reason == "proof from the future"
    slightly = sign_document(event(), ALICE_KEY, keys.ed25519_key_id(ALICE), created=NOW + timedelta(minutes=30))
    assert verify_document(slightly, RESOLVE, now=NOW).ok


def test_old_proofs_do_not_expire():
    old = sign_document(event(), ALICE_KEY, keys.ed25519_key_id(ALICE), created=NOW - timedelta(days=3650))
    assert verify_document(old, RESOLVE, now=NOW).ok


def test_proof_with_expires_in_the_past_fails():
    signed = signed_event()
    signed["proof"]["expires"] = "2025-05-01T11:00:00Z"
    assert verify_document(signed, RESOLVE, now=NOW).reason == "proof expired"


def test_non_origin_key_fails():
    forged = sign_document(event(), BOB_KEY, keys.ed25519_key_id(BOB), created=NOW)
    assert verify_document(forged, RESOLVE, now=NOW).ok  # valid, but by Bob
    result = verify_document(forged, RESOLVE, now=NOW, expected_origin="https://alice.example/events/1")
    assert not result.ok and result.reason == NOT_ORIGIN == "key is not the object's origin"


def test_origin_is_compared_by_scheme_host_and_port():
    signed = signed_event()
    assert verify_document(signed, RESOLVE, now=NOW, expected_origin="https://ALICE.example:443/orgs/7").ok
    for other in ("http://alice.example/orgs/7", "https://alice.example:8443/x", "https://evil.alice.example/x"):
        assert verify_document(signed, RESOLVE, now=NOW, expected_origin=other).reason == NOT_ORIGIN


def test_multi_proof_document():
    by_alice = signed_event()
    both = sign_document(by_alice, BOB_KEY, keys.ed25519_key_id(BOB), created=NOW)
    assert isinstance(both["proof"], list) and len(both["proof"]) == 2
    assert both["proof"][0] == by_alice["proof"], "the origin's proof is kept as it was"
    # Re-shared by Bob: Alice's proof vouches for the origin, Bob's is valid too.
    result = verify_document(both, RESOLVE, now=NOW, expected_origin=ALICE)
    assert result.ok, result.reason
    assert [c.ok for c in result.checks] == [True, True]
    assert [c.from_origin for c in result.checks] == [True, False]
    assert result.owner == ALICE
    # A third party's broken proof breaks the set: every proof of a set must verify.
    broken = copy.deepcopy(both)
    broken["proof"][1]["proofValue"] = by_alice["proof"]["proofValue"]
    result = verify_document(broken, RESOLVE, now=NOW, expected_origin=ALICE)
    assert not result.ok and result.reason == "signature mismatch"
    assert [c.ok for c in result.checks] == [True, False]
    # Only Bob's proof left: valid, but nobody from the origin vouches.
    only_bob = copy.deepcopy(both)
    only_bob["proof"] = [both["proof"][1]]
    assert verify_document(only_bob, RESOLVE, now=NOW, expected_origin=ALICE).reason == NOT_ORIGIN
    # An unresolvable key in the set is reported.
    assert verify_document(both, resolver_for(ALICE_RECORD), now=NOW).reason == "unknown key"


@pytest.mark.parametrize(
    "field,value,reason",
    [
        ("type", "Ed25519Signature2020", "unsupported proof type"),
        ("cryptosuite", "eddsa-rdfc-2022", "unsupported cryptosuite"),
        ("proofPurpose", "authentication", "wrong proof purpose"),
        ("previousProof", "urn:uuid:1", "proof chains are not supported"),
        ("created", "yesterday", "invalid proof"),
        ("proofValue", "uNotBase58", "invalid proof"),
        ("proofValue", "z" + keys.base58btc_encode(bytes(12)), "invalid proof"),
        ("verificationMethod", None, "invalid proof"),
    ],
)
def test_malformed_proofs(field, value, reason):
    signed = signed_event()
    signed["proof"][field] = value
    assert verify_document(signed, RESOLVE, now=NOW).reason == reason


def test_missing_or_empty_proof():
    assert verify_document(event(), RESOLVE, now=NOW).reason == "missing proof"
    assert verify_document({**event(), "proof": []}, RESOLVE, now=NOW).reason == "missing proof"
    assert verify_document({**event(), "proof": "z123"}, RESOLVE, now=NOW).reason == "invalid proof"
    assert verify_document(["not", "an", "object"], RESOLVE, now=NOW).reason == "not a JSON object"


def test_uncanonicalizable_document_is_reported():
    signed = signed_event()
    signed["bad"] = float("nan")
    assert verify_document(signed, RESOLVE, now=NOW).reason.startswith("document cannot be canonicalized")


def test_rotation_refresh_and_retirement():
    signed = signed_event()
    stale = keys.KeyRecord(keys.ed25519_key_id(ALICE), BOB_KEY.public_key(), ALICE)
    calls = []

    def rotating(key_id, refresh=False):
        calls.append(refresh)
        return ALICE_RECORD if refresh else stale

    assert verify_document(signed, rotating, now=NOW).ok
    assert calls == [False, True]

    # A proof made while the key was current stays valid after a planned rotation...
    retired = keys.KeyRecord(ALICE_RECORD.key_id, ALICE_KEY.public_key(), ALICE, retired_at=NOW - timedelta(days=30))
    old = sign_document(event(), ALICE_KEY, ALICE_RECORD.key_id, created=NOW - timedelta(days=60))
    assert verify_document(old, resolver_for(retired), now=NOW).ok
    # ...but one claiming to be made after the grace period is refused.
    assert verify_document(signed, resolver_for(retired), now=NOW).reason == "key retired"


def test_signing_needs_ed25519_and_aware_datetimes():
    with pytest.raises(UnsupportedKeyError):
        sign_document(event(), keys.generate_rsa(), "k", created=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        sign_document(event(), ALICE_KEY, "k", created=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_document(signed_event(), RESOLVE, now=datetime(2025, 1, 1))


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
documents = st.dictionaries(st.text(max_size=10).filter(lambda k: k != "proof"), json_values, max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_proofs_round_trip_over_random_json(document):
    signed = sign_document(document, ALICE_KEY, ALICE_RECORD.key_id, created=NOW)
    assert verify_document(signed, RESOLVE, now=NOW).ok
    tampered = {**signed, "\u2603 tampered": 1}
    assert verify_document(tampered, RESOLVE, now=NOW).reason == "signature mismatch"
