"""Constants of the wire format: JSON-LD contexts, media types, well-known IRIs."""

from __future__ import annotations

#: ActivityStreams 2.0 context (every AS2 document starts with it).
AS2_CONTEXT = "https://www.w3.org/ns/activitystreams"
#: Defines ``publicKey`` / ``publicKeyPem`` / ``owner`` (the RSA key Mastodon reads).
SECURITY_V1_CONTEXT = "https://w3id.org/security/v1"
#: Defines ``DataIntegrityProof``, ``cryptosuite``, ``proofValue`` (FEP-8b32, VC Data Integrity).
DATA_INTEGRITY_CONTEXT = "https://w3id.org/security/data-integrity/v2"
#: Controlled Identifiers: defines ``Multikey`` and ``assertionMethod``. Without it (or did/v1)
#: JSON-LD processors drop ``assertionMethod`` from an actor (FEP-521a).
CID_CONTEXT = "https://www.w3.org/ns/cid/v1"

#: The public addressing collection of AS2.
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"

ACTIVITY_JSON = "application/activity+json"
LD_JSON = "application/ld+json"
#: The AS2 JSON-LD profile: ActivityPub servers must accept this form of ld+json too.
LD_JSON_AS2 = f'application/ld+json; profile="{AS2_CONTEXT}"'
JSON = "application/json"
JRD_JSON = "application/jrd+json"

#: ``Accept`` header for fetching ActivityPub objects (ActivityPub section 3.2).
ACTIVITY_ACCEPT = f"{ACTIVITY_JSON}, {LD_JSON_AS2}"
#: Media types a fetched ActivityPub or WebFinger document may be served as.
ACTIVITY_CONTENT_TYPES = (ACTIVITY_JSON, LD_JSON, JSON, JRD_JSON)

#: Data Integrity proof type and the one cryptosuite Halles signs and verifies.
DATA_INTEGRITY_PROOF = "DataIntegrityProof"
EDDSA_JCS_2022 = "eddsa-jcs-2022"
ASSERTION_METHOD = "assertionMethod"
MULTIKEY = "Multikey"
