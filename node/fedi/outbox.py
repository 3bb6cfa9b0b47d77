"""The transactional outbox: a change and the deliveries it causes commit in one transaction.

``publish`` signs the object and the activity (FEP-8b32 eddsa-jcs-2022), appends an
``OutboxEntry`` (the catch-up log, ordered by id) and one ``Delivery`` row per recipient inbox. It
never commits: the caller's commit makes the change and its deliveries durable together, and a
rollback loses neither half alone. ``halles worker`` sends the deliveries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, select, text

from federation.proofs import sign_document
from federation.vocab import DATA_INTEGRITY_CONTEXT
from node.common.timeutil import utcnow
from node.extensions import db
from node.fedi.identity import AS_CONTEXT, load_identity
from node.fedi.keystore import domain_of
from node.fedi.models import Delivery, Follow, OutboxEntry, RemoteActor, RemoteServer, Tombstone

PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
#: Audiences of outbox entries. ``public``: every follower and anonymous readers; ``network``:
#: peers that attested the current charter only; ``outsiders``: everyone but those peers (they get a
#: richer ``network`` twin of the same object instead, e.g. a directory entry with more fields).
AUDIENCES = ("public", "network", "outsiders")


def now_aware() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def publication_stamp() -> str:
    """``updated``/``deleted`` of what we publish: microseconds, so that two changes in the same second
    stay ordered for receivers, who resolve late or reordered deliveries by this value."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def charter_reference() -> dict[str, str] | None:
    """What this node's actor says about its current charter (peers attest this)."""
    from node.charters.services import charter_url, current_version

    version = current_version()
    if version is None:
        return None
    return {
        "url": charter_url(),
        "version": version.version,
        "sha256": version.sha256,
    }


def attests_current_charter(follow: Follow, charter: dict[str, str] | None) -> bool:
    if charter is None:
        return True  # no charter published yet: nothing to attest
    attested = follow.attestation or {}
    return attested.get("sha256") == charter["sha256"] and attested.get("version") == charter["version"]


def _blocked_domains() -> set[str]:
    return set(db.session.scalars(select(RemoteServer.domain).where(RemoteServer.blocked.is_(True))))


def recipients(audience: str) -> dict[str, str]:
    """inbox URL -> domain for an audience: accepted incoming follows, shared inboxes deduplicated,
    blocked domains left out."""
    charter = charter_reference()
    blocked = _blocked_domains()
    rows = db.session.execute(
        select(Follow, RemoteActor)
        .join(RemoteActor, Follow.actor_id == RemoteActor.id)
        .where(Follow.direction == "incoming", Follow.state == "accepted")
    ).all()
    inboxes: dict[str, str] = {}
    for follow, actor in rows:
        if actor.domain in blocked:
            continue
        is_peer = attests_current_charter(follow, charter) and follow.attestation is not None
        if audience == "network" and not is_peer:
            continue
        if audience == "outsiders" and is_peer:
            continue
        inbox = actor.shared_inbox or actor.inbox
        if inbox:
            inboxes[inbox] = domain_of(inbox)
    return inboxes


def with_proof_context(document: dict[str, Any]) -> dict[str, Any]:
    """The document with the Data Integrity context in its ``@context``: without it, JSON-LD readers
    (Fedify) drop ``proof`` as an undefined term and never see the proof (FEP-8b32)."""
    context = document.get("@context", AS_CONTEXT)
    contexts = context if isinstance(context, list) else [context]
    if DATA_INTEGRITY_CONTEXT in contexts:
        return document
    return {**document, "@context": [*contexts, DATA_INTEGRITY_CONTEXT]}


def sign(document: dict[str, Any]) -> dict[str, Any]:
    identity = load_identity()
    return sign_document(with_proof_context(document), identity.ed25519_key, identity.ed25519_key_id,
                         created=now_aware())


def new_activity_id() -> str:
    return f"{current_app.config['HALLES_URL']}/activities/{uuid.uuid4()}"


def build_activity(activity_type: str, obj: Any, *, audience: str, activity_id: str | None = None) -> dict[str, Any]:
    identity = load_identity()
    context = obj.get("@context", AS_CONTEXT) if isinstance(obj, dict) else AS_CONTEXT
    public = audience == "public"
    return {
        "@context": context,
        "id": activity_id or new_activity_id(),
        "type": activity_type,
        "actor": identity.actor_url,
        "object": obj,
        "published": now_aware().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "to": [PUBLIC] if public else [identity.followers_url],
        "cc": [identity.followers_url] if public else [],
    }


def publish(
    activity_type: str,
    obj: Any,
    *,
    audience: str,
    object_id: str,
    only_inboxes: dict[str, str] | None = None,
    sign_object: bool = True,
) -> OutboxEntry:
    """Sign and record an activity, with one delivery per recipient. Does not commit."""
    if audience not in AUDIENCES:
        raise ValueError(f"unknown audience {audience!r}")
    if sign_object and isinstance(obj, dict) and "proof" not in obj:
        obj = sign(obj)
    activity = sign(build_activity(activity_type, obj, audience=audience))
    return record(activity, audience=audience, object_id=object_id, only_inboxes=only_inboxes)


#: PostgreSQL advisory lock ("HALLES" in hex), see ``_in_commit_order``.
OUTBOX_LOCK_KEY = 0x48414C4C4553


def _in_commit_order() -> None:
    """Catch-up pages the outbox by id, and a peer keeps the last id it read. On PostgreSQL an id is
    drawn when the row is inserted, so a publication inserted first and committed last would land
    below a cursor already handed out, and catch-up would never see it. Publishing transactions
    therefore take this lock before their outbox row gets its id and keep it until they commit:
    ids follow commit order. (SQLite has one writer at a time: nothing to do.) Publications come
    last in their transaction (the change hooks), so the lock is held briefly."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": OUTBOX_LOCK_KEY})


def record(
    activity: dict[str, Any], *, audience: str, object_id: str, only_inboxes: dict[str, str] | None = None
) -> OutboxEntry:
    """Append an already-signed activity (ours, or one we forward) and queue its deliveries."""
    _in_commit_order()
    entry = OutboxEntry(
        activity_id=activity["id"],
        activity_type=activity["type"],
        object_id=object_id,
        audience=audience,
        activity=activity,
    )
    db.session.add(entry)
    db.session.flush()
    targets = recipients(audience) if only_inboxes is None else only_inboxes
    now = utcnow()
    for inbox, domain in targets.items():
        db.session.add(Delivery(outbox_entry_id=entry.id, inbox_url=inbox, domain=domain, next_attempt_at=now))
    return entry


def deliver_to(activity_type: str, obj: Any, inbox: str, *, extra: dict[str, Any] | None = None) -> OutboxEntry:
    """An activity addressed to one actor (Follow, Accept, Reject): kept out of the public log."""
    activity = build_activity(activity_type, obj, audience="network")
    if extra:
        activity.update(extra)
    activity = sign(activity)
    entry = OutboxEntry(
        activity_id=activity["id"],
        activity_type=activity_type,
        object_id=obj if isinstance(obj, str) else obj.get("id", ""),
        audience="direct",
        activity=activity,
    )
    db.session.add(entry)
    db.session.flush()
    db.session.add(Delivery(outbox_entry_id=entry.id, inbox_url=inbox, domain=domain_of(inbox)))
    return entry


def last_published(object_id: str, audiences: tuple[str, ...] = AUDIENCES) -> OutboxEntry | None:
    return db.session.scalar(
        select(OutboxEntry)
        .where(OutboxEntry.object_id == object_id, OutboxEntry.audience.in_(audiences))
        .order_by(OutboxEntry.id.desc())
        .limit(1)
    )


def add_tombstone(ap_id: str, former_type: str) -> None:
    if db.session.scalar(select(Tombstone.id).where(Tombstone.ap_id == ap_id)) is None:
        db.session.add(Tombstone(ap_id=ap_id, former_type=former_type))


def tombstone_object(ap_id: str, former_type: str) -> dict[str, Any]:
    return {
        "@context": AS_CONTEXT,
        "id": ap_id,
        "type": "Tombstone",
        "formerType": former_type,
        "deleted": publication_stamp(),
    }


# --- retention of delivery rows ---------------------------------------------------------------------

#: Dead deliveries are kept this many times longer than sent ones: an admin looks at them to find
#: which peer failed and why (``halles peer list``, the office page) long after the fact.
DEAD_RETENTION_FACTOR = 3
PRUNE_BATCH = 1000


@dataclass(frozen=True)
class Pruned:
    sent: int
    dead: int
    sent_days: float
    dead_days: float


def delivery_retention_days() -> int:
    return int(current_app.config.get("HALLES_DELIVERY_RETENTION_DAYS", 30))


def _delete_batch(where: Any, limit: int) -> int:
    # A bounded id list, then a plain DELETE: the same statement on SQLite and PostgreSQL (neither
    # portable DELETE ... LIMIT exists), and each batch is a short transaction of its own.
    ids = list(db.session.scalars(select(Delivery.id).where(*where).limit(limit)))
    if not ids:
        db.session.rollback()
        return 0
    db.session.execute(delete(Delivery).where(Delivery.id.in_(ids)).execution_options(synchronize_session=False))
    db.session.commit()
    return len(ids)


def prune_deliveries(*, older_than_days: float | None = None, batch: int = PRUNE_BATCH,
                     max_batches: int | None = None, now: datetime | None = None) -> Pruned:
    """Delete ``sent`` deliveries sent more than ``older_than_days`` ago (default
    ``HALLES_DELIVERY_RETENTION_DAYS``) and ``dead`` ones created more than DEAD_RETENTION_FACTOR times
    that long ago, ``batch`` rows per transaction. Pending deliveries are never touched, nor outbox
    entries: catch-up pages the outbox, not the deliveries, so a peer still pulls everything.

    ``max_batches`` bounds the work of one call (the worker does a little at a time); None goes on
    until nothing is left. Commits."""
    days = float(delivery_retention_days() if older_than_days is None else older_than_days)
    now = now or utcnow()
    sent_before = now - timedelta(days=days)
    dead_before = now - timedelta(days=days * DEAD_RETENTION_FACTOR)
    counts = {"sent": 0, "dead": 0}
    for state, where in (
        ("sent", (Delivery.state == "sent", Delivery.sent_at < sent_before)),
        ("dead", (Delivery.state == "dead", Delivery.created_at < dead_before)),
    ):
        batches = 0
        while max_batches is None or batches < max_batches:
            removed = _delete_batch(where, batch)
            counts[state] += removed
            batches += 1
            if removed < batch:
                break
    return Pruned(counts["sent"], counts["dead"], days, days * DEAD_RETENTION_FACTOR)
