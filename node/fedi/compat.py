"""What real platforms do that the protocol alone does not tell us, kept in one place.

- **Activity ids reused** (Gancio): Gancio sends its Create, Update and Delete of an event all with the
  id ``<base>/federation/m/<event id>#create`` (server/federation/helpers.js ``sendEvent``). An inbox
  idempotent by activity id alone would drop every update as a duplicate; ``inbox_key`` keeps the id
  for a real duplicate (the same activity again) and derives a new key when the body differs.
- **Objects re-announced by their own server** (Mobilizon groups): a group's followers never receive
  the member's Create/Update; they receive an ``Announce`` by the group of the embedded event, with no
  proof (lib/federation/activity_pub/utils.ex ``maybe_relay_if_group_activity``). The object is
  fetched again from its id, so its origin vouches for its current state (and says when it is gone).
- **Linked Data Signatures on top of proofs** (Fedify, Mastodon): Fedify signs an activity with its
  FEP-8b32 proof first and *then* adds a Linked Data Signature (``signature``, RsaSignature2017) over
  the result, as Mastodon does; its own inbox detaches ``signature`` before checking the proof
  (``detachSignature`` in its inbox handler). ``detach_ld_signature`` does the same.
- **Accounts deleted** (Mastodon): the Delete of an account is signed with the account's key while its
  actor URL already answers 410, so a server that never met the account cannot verify it. Like
  Mastodon's own inbox, such a Delete is acknowledged and nothing is stored.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from federation.errors import FetchError
from federation.urls import same_origin
from node.fedi import http

#: HTTP statuses with which an origin says an object no longer exists.
GONE_STATUSES = (404, 410)


def body_hash(activity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(activity, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def inbox_key(activity: dict[str, Any], stored: dict[str, Any] | None) -> str:
    """The key an activity is stored under in the inbox. ``stored`` is the activity already stored
    under its id, if any: the same activity again keeps the id (a duplicate); a different body under
    a reused id gets ``<id>#halles-<hash>`` so it is applied too."""
    activity_id = activity["id"]
    if stored is None or body_hash(stored) == body_hash(activity):
        return activity_id
    suffix = f"#halles-{body_hash(activity)[:24]}"
    return activity_id[: 500 - len(suffix)] + suffix


def detach_ld_signature(document: dict[str, Any]) -> dict[str, Any]:
    """The document without a Linked Data Signature (``signature`` with a ``signatureValue``), which is
    added after the object integrity proof and so is not covered by it. Anything else is left alone."""
    signature = document.get("signature")
    if isinstance(signature, dict) and "signatureValue" in signature:
        return {key: value for key, value in document.items() if key != "signature"}
    return document


def is_self_delete(activity: dict[str, Any]) -> bool:
    """A Delete whose object is its own actor (an account deleting itself)."""
    if activity.get("type") != "Delete":
        return False
    actor, obj = activity.get("actor"), activity.get("object")
    actor = actor.get("id") if isinstance(actor, dict) else actor
    obj = obj.get("id") if isinstance(obj, dict) else obj
    return isinstance(actor, str) and actor == obj


class Gone(Exception):
    """The origin says the object was deleted (404/410 or a Tombstone)."""


def fetch_object(url: str) -> dict[str, Any]:
    """GET an object from its own URL (safe fetch). Raises ``Gone`` when the origin says it no longer
    exists and ``FetchError`` for anything else, including a document claiming another origin."""
    try:
        fetched = http.fetch(url)
    except FetchError as exc:
        if getattr(exc, "status", None) in GONE_STATUSES:
            raise Gone(url) from exc
        raise
    document = fetched.document
    if document.get("type") == "Tombstone":
        raise Gone(url)
    object_id = document.get("id")
    if not isinstance(object_id, str) or not same_origin(object_id, url) or not same_origin(fetched.url, url):
        raise FetchError("the document fetched claims another origin than its URL", url=url)
    return document
