"""Halles federation protocol library: keys, canonical JSON, object proofs, HTTP signatures, safe fetch.

Pure by design: nothing here imports Flask, SQLAlchemy or ``node``. Key lookup, the clock (``now=``),
the DNS resolver and the ``requests`` session are passed in by the caller, so the same code runs in
the web app, in the worker and in tests. docs/protocol.md describes the wire format.
"""

from .errors import CanonicalizationError, FederationError, FetchError, KeyFormatError
from .fetch import check_url_allowed, fetch_json
from .httpsig import (
    MAX_CLOCK_SKEW,
    MAX_SIGNATURE_AGE,
    SignatureResult,
    SignedAuth,
    Signer,
    post_signed,
    sign_request,
    verify_request,
)
from .jcs import canonicalize
from .keys import KeyRecord, ResolvedKey
from .proofs import ProofResult, sign_document, verify_document
from .vocab import PUBLIC

__all__ = [
    "MAX_CLOCK_SKEW",
    "MAX_SIGNATURE_AGE",
    "PUBLIC",
    "CanonicalizationError",
    "FederationError",
    "FetchError",
    "KeyFormatError",
    "KeyRecord",
    "ProofResult",
    "ResolvedKey",
    "SignatureResult",
    "SignedAuth",
    "Signer",
    "canonicalize",
    "check_url_allowed",
    "fetch_json",
    "post_signed",
    "sign_document",
    "sign_request",
    "verify_document",
    "verify_request",
]
