"""FEP-8b32 object integrity proofs: ``DataIntegrityProof`` with cryptosuite ``eddsa-jcs-2022``.

Algorithm (W3C "Data Integrity EdDSA Cryptosuites v1.0", section 3.3, eddsa-jcs-2022):

1. the *unsecured document* is the object without its ``proof`` member;
2. the *proof configuration* is the proof without ``proofValue``, plus the document's
   ``@context`` (current W3C rule, so a proof cannot be replayed under another context);
3. ``hashData = SHA-256(JCS(proofConfig)) || SHA-256(JCS(unsecuredDocument))``;
4. ``proofValue = "z" + base58btc(Ed25519.sign(hashData))``.

Several proofs (a proof *set*, ``proof`` as a list) each sign the same unsecured document; this
module verifies every one of them. Proof *chains* (``previousProof``) are refused.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from .clock import MAX_CLOCK_SKEW, format_xsd_datetime, parse_xsd_datetime, require_aware
from .errors import CanonicalizationError, KeyFormatError, UnsupportedKeyError
from .jcs import SharedCanonicalizer, canonicalize
from .keys import KeyRecord, KeyResolver, multibase_decode, multibase_encode, resolve_key
from .urls import same_origin
from .vocab import ASSERTION_METHOD, DATA_INTEGRITY_PROOF, EDDSA_JCS_2022

NOT_ORIGIN = "key is not the object's origin"


@dataclass(frozen=True)
class ProofCheck:
    """The verdict on one proof of a document."""

    verification_method: str | None
    ok: bool
    reason: str | None = None
    owner: str | None = None
    created: datetime | None = None
    #: Whether the key's owner is of the expected origin (``None`` when no origin was expected).
    from_origin: bool | None = None


@dataclass(frozen=True)
class ProofResult:
    """The verdict on a document: ``ok`` only when every proof verified (W3C proof set rule) and,
    when an origin was expected, at least one of them was made by a key of that origin."""

    ok: bool
    reason: str | None
    checks: tuple[ProofCheck, ...] = ()

    def _vouching(self) -> ProofCheck | None:
        valid = [c for c in self.checks if c.ok]
        return next((c for c in valid if c.from_origin), valid[0] if valid else None)

    @property
    def owner(self) -> str | None:
        """Owner of the key that vouches for the object (the origin's, when one was expected)."""
        check = self._vouching()
        return check.owner if check else None

    @property
    def key_id(self) -> str | None:
        check = self._vouching()
        return check.verification_method if check else None


def unsecured_document(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key != "proof"}


def hash_data(unsecured: dict[str, Any], proof_config: dict[str, Any]) -> bytes:
    """``SHA-256(JCS(proofConfig)) || SHA-256(JCS(document))``, the 64 bytes that get signed."""
    return hashlib.sha256(canonicalize(proof_config)).digest() + hashlib.sha256(canonicalize(unsecured)).digest()


def sign_document(
    document: dict[str, Any],
    private_key: ed25519.Ed25519PrivateKey,
    verification_method: str,
    *,
    created: datetime,
    proof_purpose: str = ASSERTION_METHOD,
) -> dict[str, Any]:
    """Return a new document carrying an ``eddsa-jcs-2022`` proof made with ``private_key``.

    An existing proof is kept and the new one is appended (a proof set): the re-sharer's proof
    does not replace the origin's. ``created`` is written in whole seconds with ``Z``.
    """
    if not isinstance(private_key, ed25519.Ed25519PrivateKey):
        raise UnsupportedKeyError("eddsa-jcs-2022 proofs need an Ed25519 private key")
    unsecured = copy.deepcopy(unsecured_document(document))
    options = {
        "type": DATA_INTEGRITY_PROOF,
        "cryptosuite": EDDSA_JCS_2022,
        "verificationMethod": verification_method,
        "proofPurpose": proof_purpose,
        "created": format_xsd_datetime(created),
    }
    config = dict(options)
    if "@context" in unsecured:
        config["@context"] = unsecured["@context"]
    signature = private_key.sign(hash_data(unsecured, config))
    # The emitted proof leaves @context out, as FEP-8b32 and Fedify do: verifiers take it from the
    # document, and an embedded @context would be noise to AS2 consumers.
    proof = {**options, "proofValue": multibase_encode(signature)}
    existing = document.get("proof")
    if existing is None:
        unsecured["proof"] = proof
    else:
        previous = existing if isinstance(existing, list) else [existing]
        unsecured["proof"] = [*copy.deepcopy(previous), proof]
    return unsecured


def verify_document(
    document: dict[str, Any],
    key_resolver: KeyResolver,
    *,
    now: datetime,
    expected_origin: str | None = None,
    proof_purpose: str = ASSERTION_METHOD,
    canonicalizer: SharedCanonicalizer | None = None,
) -> ProofResult:
    """Verify every proof of ``document``.

    ``expected_origin`` is the URL the object claims to come from (its ``id``, ``actor`` or
    ``attributedTo``). A proof counts for that origin when its key's owner has the same scheme,
    host and port: one node signs, with its single actor key, the objects of all the
    organisations it hosts (FEP-fe34 same-origin model), so an exact owner match would be wrong.

    ``canonicalizer``: shared with the verification of the documents this one embeds or is embedded
    in (an activity and its object), so that their common members are canonicalised once.
    """
    now = require_aware(now)
    if not isinstance(document, dict):
        return ProofResult(False, "not a JSON object")
    proof = document.get("proof")
    proofs = proof if isinstance(proof, list) else [] if proof is None else [proof]
    if not proofs:
        return ProofResult(False, "missing proof")
    unsecured = unsecured_document(document)
    digest: list[bytes] = []

    def unsecured_digest() -> bytes:
        # The costly half of hashData (JCS of the whole object), the same for every proof of the set.
        if not digest:
            canonical = (canonicalizer.canonicalize(document, omit="proof") if canonicalizer is not None
                         else canonicalize(unsecured))
            digest.append(hashlib.sha256(canonical).digest())
        return digest[0]

    checks = tuple(_verify_one(item, unsecured, unsecured_digest, key_resolver, now, proof_purpose, expected_origin)
                   for item in proofs)
    failed = next((check for check in checks if not check.ok), None)
    if failed is not None:
        return ProofResult(False, failed.reason, checks)
    # A re-shared object keeps its origin's proof next to the re-sharer's: it is enough that one
    # valid proof comes from the origin, the others only have to be valid.
    if expected_origin is not None and not any(check.from_origin for check in checks):
        return ProofResult(False, NOT_ORIGIN, checks)
    return ProofResult(True, None, checks)


def _context_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _verify_one(
    proof: Any,
    unsecured: dict[str, Any],
    unsecured_digest: Callable[[], bytes],
    resolver: KeyResolver,
    now: datetime,
    purpose: str,
    expected_origin: str | None = None,
) -> ProofCheck:
    if not isinstance(proof, dict):
        return ProofCheck(None, False, "invalid proof")
    method = proof.get("verificationMethod")
    method = method if isinstance(method, str) else None

    def fail(reason: str, **extra: Any) -> ProofCheck:
        # A failed check names no key owner: it vouches for no origin.
        return ProofCheck(method, False, reason, **extra, from_origin=None if expected_origin is None else False)

    if proof.get("type") != DATA_INTEGRITY_PROOF:
        return fail("unsupported proof type")
    if proof.get("cryptosuite") != EDDSA_JCS_2022:
        return fail("unsupported cryptosuite")
    if method is None:
        return fail("invalid proof")
    if proof.get("proofPurpose") != purpose:
        return fail("wrong proof purpose")
    if "previousProof" in proof:
        return fail("proof chains are not supported")
    try:
        signature = multibase_decode(proof.get("proofValue", ""))
        created = parse_xsd_datetime(proof.get("created"))
    except (KeyFormatError, ValueError, TypeError):
        return fail("invalid proof")
    if len(signature) != 64:
        return fail("invalid proof")
    if created > now + MAX_CLOCK_SKEW:
        return fail("proof from the future", created=created)
    if "expires" in proof:
        try:
            if now > parse_xsd_datetime(proof["expires"]):
                return fail("proof expired", created=created)
        except ValueError:
            return fail("invalid proof")

    options = {key: value for key, value in proof.items() if key != "proofValue"}
    document = unsecured
    if "@context" in options:
        # W3C verify step 4: a proof that carries @context must list a prefix of the document's
        # contexts; the document is then hashed with exactly those contexts.
        proof_ctx = _context_list(options["@context"])
        doc_ctx = _context_list(unsecured.get("@context", []))
        if doc_ctx[: len(proof_ctx)] != proof_ctx:
            return fail("proof context mismatch", created=created)
        document = {**unsecured, "@context": options["@context"]}
    config = dict(options)
    if "@context" in document:
        config["@context"] = document["@context"]
    try:
        # The document's digest is the costly half (JCS of the whole object) and the same for both
        # candidates: computed once.
        document_digest = (unsecured_digest() if document is unsecured
                           else hashlib.sha256(canonicalize(document)).digest())
        current = hashlib.sha256(canonicalize(config)).digest() + document_digest
    except CanonicalizationError as exc:
        return fail(f"document cannot be canonicalized: {exc}", created=created)

    def candidates() -> Iterator[bytes]:
        yield current
        if "@context" in config and "@context" not in options:
            # FEP-8b32's own examples (and servers that followed its first drafts) hash the proof
            # configuration without @context. With JCS the document hash already covers the
            # document's @context, so accepting that form does not widen what can be forged.
            # Hashed only when the current form did not verify.
            legacy = {key: value for key, value in config.items() if key != "@context"}
            yield hashlib.sha256(canonicalize(legacy)).digest() + document_digest

    reason = "unknown key"
    for refresh in (False, True):
        key = resolve_key(resolver, method, refresh=refresh)
        if key is None:
            break
        reason = _check_key(key, signature, candidates(), created)
        if reason is None:
            return ProofCheck(method, True, None, owner=key.owner, created=created,
                              from_origin=None if expected_origin is None else _of_origin(key.owner, expected_origin))
    return fail(reason, created=created)


def _of_origin(owner: str | None, expected_origin: str) -> bool:
    return owner is not None and same_origin(owner, expected_origin)


def _check_key(key: KeyRecord, signature: bytes, candidates: Iterable[bytes], created: datetime) -> str | None:
    if not isinstance(key.public_key, ed25519.Ed25519PublicKey):
        return "algorithm not allowed"
    # A proof made while the key was current stays valid after a planned rotation; what matters
    # is whether the key was usable when the proof says it was made.
    if not key.is_usable(created):
        return "key retired"
    for data in candidates:
        try:
            key.public_key.verify(signature, data)
            return None
        except InvalidSignature:
            continue
    return "signature mismatch"
