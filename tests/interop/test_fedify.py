"""Interoperability with Fedify 2.3.6: each side verifies what the other signed, and refuses
tampered copies. Proofs (FEP-8b32 eddsa-jcs-2022) and HTTP signatures (RFC 9421, draft-cavage)."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime, timedelta

import pytest

from federation import keys
from federation.httpsig import CAVAGE, RFC9421, sign_request, verify_request
from federation.proofs import sign_document, verify_document
from federation.vocab import AS2_CONTEXT, CID_CONTEXT, DATA_INTEGRITY_CONTEXT, PUBLIC, SECURITY_V1_CONTEXT

pytestmark = pytest.mark.fedify

ACTOR = "https://halles.example/actor"
PARTNER = "https://partner.example/actor"
INBOX = "https://peer.example/inbox"
NOW = datetime.now(UTC).replace(microsecond=0)
RSA_KEY = keys.generate_rsa()
ED_KEY = keys.generate_ed25519()
PARTNER_ED = keys.generate_ed25519()
#: Fedify only looks up ``publicKey`` for HTTP signatures, so the Ed25519 key used to sign requests
#: is also published there, under its own id.
ED_HTTP_KEY_ID = ACTOR + "#ed25519-http"


def actor_document(actor, rsa_key, ed_key, *, ed_http=False):
    public_keys = [keys.public_key_document(keys.main_key_id(actor), actor, rsa_key.public_key())]
    if ed_http:
        public_keys.append(keys.public_key_document(ED_HTTP_KEY_ID, actor, ed_key.public_key()))
    return {
        "@context": [AS2_CONTEXT, SECURITY_V1_CONTEXT, DATA_INTEGRITY_CONTEXT, CID_CONTEXT],
        "id": actor,
        "type": "Service",
        "preferredUsername": "halles",
        "inbox": actor + "/inbox",
        "outbox": actor + "/outbox",
        "publicKey": public_keys,
        "assertionMethod": [keys.multikey_document(keys.ed25519_key_id(actor), actor, ed_key.public_key())],
    }


DOCUMENTS = {
    ACTOR: actor_document(ACTOR, RSA_KEY, ED_KEY, ed_http=True),
    PARTNER: actor_document(PARTNER, keys.generate_rsa(), PARTNER_ED),
}


def resolve(key_id, refresh=False):
    """Our side's key lookup, reading the same actor documents Fedify gets."""
    actor = DOCUMENTS.get(key_id.split("#")[0])
    if actor is None:
        return None
    for entry in actor["publicKey"]:
        if entry["id"] == key_id:
            return keys.KeyRecord(key_id, keys.load_public_key(entry["publicKeyPem"]), entry["owner"])
    for entry in actor["assertionMethod"]:
        if entry["id"] == key_id:
            return keys.KeyRecord(key_id, keys.multibase_to_ed25519(entry["publicKeyMultibase"]), entry["controller"])
    return None


def note(**extra):
    return {
        "@context": [AS2_CONTEXT, DATA_INTEGRITY_CONTEXT],
        "id": ACTOR + "/notes/1",
        "type": "Note",
        "attributedTo": ACTOR,
        "content": "Ouverture de la Halle de Belleville, samedi à 10 h",
        "published": "2025-05-01T10:00:00Z",
        "to": [PUBLIC],
        **extra,
    }


# --- object integrity proofs --------------------------------------------------------------------


def test_fedify_verifies_our_proof(fedify):
    signed = sign_document(note(), ED_KEY, keys.ed25519_key_id(ACTOR), created=NOW)
    result = fedify.call("verifyProof", document=signed, documents=DOCUMENTS)
    assert result == {"proofs": [keys.ed25519_key_id(ACTOR)], "object": True}
    tampered = copy.deepcopy(signed)
    tampered["content"] = "Fermeture de la Halle"
    assert fedify.call("verifyProof", document=tampered, documents=DOCUMENTS) == {"proofs": [None], "object": False}


def test_fedify_verifies_our_proof_set(fedify):
    by_origin = sign_document(note(), ED_KEY, keys.ed25519_key_id(ACTOR), created=NOW)
    both = sign_document(by_origin, PARTNER_ED, keys.ed25519_key_id(PARTNER), created=NOW)
    result = fedify.call("verifyProof", document=both, documents=DOCUMENTS)
    assert result == {"proofs": [keys.ed25519_key_id(ACTOR), keys.ed25519_key_id(PARTNER)], "object": True}
    # Only the partner's proof: valid, but Fedify (like us) wants the attributed actor to vouch.
    only_partner = {**both, "proof": both["proof"][1]}
    result = fedify.call("verifyProof", document=only_partner, documents=DOCUMENTS)
    assert result == {"proofs": [keys.ed25519_key_id(PARTNER)], "object": False}
    assert verify_document(only_partner, resolve, now=NOW, expected_origin=ACTOR).reason == (
        "key is not the object's origin"
    )


def test_we_verify_fedify_proofs(fedify):
    signed = fedify.call(
        "signObject",
        document=note(),
        documents=DOCUMENTS,
        privateKeyPem=keys.private_key_to_pem(ED_KEY),
        keyId=keys.ed25519_key_id(ACTOR),
        created=NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )["document"]
    proof = signed["proof"]
    assert proof["cryptosuite"] == "eddsa-jcs-2022" and proof["verificationMethod"] == keys.ed25519_key_id(ACTOR)
    result = verify_document(signed, resolve, now=NOW, expected_origin=ACTOR)
    assert result.ok, (result.reason, json.dumps(signed, indent=1))
    assert result.owner == ACTOR
    tampered = copy.deepcopy(signed)
    tampered["content"] = "Fermeture de la Halle"
    assert verify_document(tampered, resolve, now=NOW).reason == "signature mismatch"


# --- HTTP signatures ----------------------------------------------------------------------------

BODY = json.dumps({"@context": AS2_CONTEXT, "type": "Follow", "actor": ACTOR, "object": PARTNER}).encode()


def fedify_request(headers, body=BODY, url=INBOX):
    return {"method": "POST", "url": url, "headers": headers, "body": base64.b64encode(body).decode()}


@pytest.mark.parametrize(
    "flavour,private_key,key_id",
    [
        (RFC9421, RSA_KEY, keys.main_key_id(ACTOR)),
        (CAVAGE, RSA_KEY, keys.main_key_id(ACTOR)),
        (RFC9421, ED_KEY, ED_HTTP_KEY_ID),
    ],
    ids=["rfc9421-rsa", "cavage-rsa", "rfc9421-ed25519"],
)
def test_fedify_verifies_our_request_signatures(fedify, flavour, private_key, key_id):
    headers = {"Content-Type": "application/activity+json"}
    headers.update(sign_request("POST", INBOX, headers, BODY, private_key, key_id, flavour=flavour, now=NOW))
    now = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    result = fedify.call("verifyRequest", request=fedify_request(headers), documents=DOCUMENTS, now=now)
    assert result == {"verified": True, "keyId": key_id}
    tampered = fedify.call(
        "verifyRequest",
        request=fedify_request(headers, body=BODY.replace(b"Follow", b"Block")),
        documents=DOCUMENTS,
        now=now,
    )
    assert tampered == {"verified": False, "reason": "invalidSignature"}
    elsewhere = fedify.call(
        "verifyRequest", request=fedify_request(headers, url=INBOX + "2"), documents=DOCUMENTS, now=now
    )
    assert elsewhere["verified"] is False
    late = (NOW + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (
        fedify.call("verifyRequest", request=fedify_request(headers), documents=DOCUMENTS, now=late)["verified"]
        is False
    )


@pytest.mark.parametrize("spec,flavour", [("rfc9421", RFC9421), ("draft-cavage-http-signatures-12", CAVAGE)])
def test_we_verify_fedify_request_signatures(fedify, spec, flavour):
    headers = fedify.call(
        "signRequest",
        request=fedify_request({"Content-Type": "application/activity+json"}),
        privateKeyPem=keys.private_key_to_pem(RSA_KEY),
        keyKind="rsa",
        keyId=keys.main_key_id(ACTOR),
        spec=spec,
        now=NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )["headers"]
    result = verify_request("POST", INBOX, headers, BODY, resolve, now=NOW)
    assert result.ok, (result.reason, headers)
    assert (result.flavour, result.key_id, result.owner) == (flavour, keys.main_key_id(ACTOR), ACTOR)
    digest_reason = verify_request("POST", INBOX, headers, BODY + b" ", resolve, now=NOW).reason
    assert digest_reason == "digest mismatch"
    assert verify_request("POST", INBOX + "2", headers, BODY, resolve, now=NOW).reason == "signature mismatch"
    if flavour == CAVAGE:  # Fedify's draft-cavage signature covers every header it sent, content-type too
        moved = {**headers, "content-type": "text/plain"}
        assert verify_request("POST", INBOX, moved, BODY, resolve, now=NOW).reason == "signature mismatch"
