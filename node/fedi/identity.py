"""This node's ActivityPub identity: its actor URL, key ids and private keys (from the instance
folder), and the actor document other servers fetch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from flask import Flask, current_app, has_app_context

from federation import keys
from federation.vocab import CID_CONTEXT, DATA_INTEGRITY_CONTEXT
from node.instance import KEY_FILES

AS_CONTEXT = "https://www.w3.org/ns/activitystreams"
SECURITY_V1_CONTEXT = "https://w3id.org/security/v1"
HALLES_NS = "https://halles.tiers-lieux.org/ns#"
#: The actor member that says the node's inbox takes batches (``halles:batchDelivery``, see
#: docs/protocol.md "Batched delivery"): ``{"inbox": <url>, "maxItems": n, "maxBytes": n}``. A node
#: sends batches only to an inbox whose actor document names it there; any other member of that
#: object is ignored, so limits or options can be added without breaking older senders, and a
#: different wire format would be advertised under another term.
BATCH_TERM = "batchDelivery"
#: The account part of the node's handle: ``acct:agenda@<host>``.
USERNAME = "agenda"
SOFTWARE = "halles"


class MissingKeys(RuntimeError):
    pass


@dataclass(frozen=True)
class NodeIdentity:
    base_url: str
    name: str
    city: str
    address: str
    rsa_key: rsa.RSAPrivateKey
    ed25519_key: ed25519.Ed25519PrivateKey

    @property
    def actor_url(self) -> str:
        return f"{self.base_url}/actor"

    @property
    def inbox_url(self) -> str:
        return f"{self.base_url}/inbox"

    @property
    def outbox_url(self) -> str:
        return f"{self.base_url}/outbox"

    @property
    def followers_url(self) -> str:
        return f"{self.base_url}/followers"

    @property
    def following_url(self) -> str:
        return f"{self.base_url}/following"

    @property
    def rsa_key_id(self) -> str:
        return keys.main_key_id(self.actor_url)

    @property
    def ed25519_key_id(self) -> str:
        return keys.ed25519_key_id(self.actor_url)

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

    @property
    def handle(self) -> str:
        return f"{USERNAME}@{self.host}"


def load_identity(app: Flask | None = None) -> NodeIdentity:
    app = app or current_app
    cached = app.extensions.get("halles_identity")
    if cached is not None:
        return cached
    folder = Path(app.config["HALLES_INSTANCE"])
    loaded = {}
    for kind, relative in KEY_FILES.items():
        path = folder / relative
        if not path.exists():
            raise MissingKeys(f"node key {path} is missing: run `halles init` (or restore a backup with the keys)")
        loaded[kind] = keys.load_private_key(path.read_bytes())
    identity = NodeIdentity(
        base_url=app.config["HALLES_URL"],
        name=app.config["HALLES_NAME"],
        city=app.config["HALLES_CITY"],
        address=app.config.get("HALLES_ADDRESS", ""),
        rsa_key=loaded["rsa"],
        ed25519_key=loaded["ed25519"],
    )
    app.extensions["halles_identity"] = identity
    return identity


def actor_document(identity: NodeIdentity, charter: dict[str, Any] | None) -> dict[str, Any]:
    """The node's actor: an ``Organization`` with an RSA ``publicKey`` (Mastodon), an Ed25519
    ``Multikey`` under ``assertionMethod`` (FEP-521a; the cid/v1 context keeps it in JSON-LD), and
    ``batchDelivery``: its inbox takes batches of activities (``batch_delivery``)."""
    document: dict[str, Any] = {
        "@context": [
            AS_CONTEXT,
            SECURITY_V1_CONTEXT,
            CID_CONTEXT,
            DATA_INTEGRITY_CONTEXT,
            {
                "halles": HALLES_NS,
                "sc": "http://schema.org/",
                "PostalAddress": "sc:PostalAddress",
                "address": "sc:address",
                "addressLocality": "sc:addressLocality",
                "streetAddress": "sc:streetAddress",
                "charter": "halles:charter",
                "manuallyApprovesFollowers": "as:manuallyApprovesFollowers",
                BATCH_TERM: "halles:batchDelivery",
                "maxItems": "halles:maxItems",
                "maxBytes": "halles:maxBytes",
            },
        ],
        "id": identity.actor_url,
        "type": "Organization",
        "preferredUsername": USERNAME,
        "name": identity.name,
        "summary": f"Tiers-lieu à {identity.city} — agenda et annuaire des membres",
        "url": identity.base_url,
        "inbox": identity.inbox_url,
        "outbox": identity.outbox_url,
        "followers": identity.followers_url,
        "following": identity.following_url,
        "endpoints": {"sharedInbox": identity.inbox_url},
        BATCH_TERM: batch_delivery(identity),
        "manuallyApprovesFollowers": False,
        "discoverable": True,
        "publicKey": keys.public_key_document(identity.rsa_key_id, identity.actor_url, identity.rsa_key.public_key()),
        "assertionMethod": [
            keys.multikey_document(identity.ed25519_key_id, identity.actor_url, identity.ed25519_key.public_key())
        ],
        "location": {
            "type": "Place",
            "name": identity.name,
            "address": {
                "type": "PostalAddress",
                "streetAddress": identity.address,
                "addressLocality": identity.city,
                "addressCountry": "FR",
            },
        },
    }
    if charter:
        document["charter"] = charter
    return document


def batch_delivery(identity: NodeIdentity) -> dict[str, Any]:
    """What the inbox takes in one request (``node.fedi.inbox.is_batch``): at most ``maxItems``
    activities in ``maxBytes`` bytes. ``maxItems`` is also kept within the inbox rate limit's budget
    (``HALLES_RATE_LIMIT_INBOX``, which counts activities): a larger batch could never be accepted."""
    from node.fedi.inbox import MAX_BATCH_BYTES, MAX_BATCH_ITEMS  # the inbox imports this module

    items = MAX_BATCH_ITEMS
    if has_app_context():
        from node.common.ratelimit import configured_rate

        rate = configured_rate("inbox")
        if rate is not None:
            items = min(items, rate.count)
    return {"inbox": identity.inbox_url, "maxItems": items, "maxBytes": MAX_BATCH_BYTES}
