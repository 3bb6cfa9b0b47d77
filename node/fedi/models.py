"""Federation state: remote actors, follow relations (peering and plain followers), the outbox with
its deliveries (transactional outbox), the inbox queue, remote directory entries and tombstones."""

from __future__ import annotations

import zlib
from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from node.common.timeutil import utcnow
from node.extensions import db

FOLLOW_DIRECTIONS = ("incoming", "outgoing")
#: pending: asked, not answered; accepted; rejected; removed (Undo or peer remove).
FOLLOW_STATES = ("pending", "accepted", "rejected", "removed")
DELIVERY_STATES = ("pending", "sent", "dead")
INBOX_STATES = ("pending", "applied", "ignored", "failed")
AUDIENCES = ("public", "network")


class RemoteActor(db.Model):
    __tablename__ = "remote_actors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ap_id: Mapped[str] = mapped_column(String(500), unique=True)
    #: host[:port] of ap_id, for domain blocks and per-server settings.
    domain: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    city: Mapped[str] = mapped_column(String(120), default="")
    actor_type: Mapped[str] = mapped_column(String(40), default="")
    inbox: Mapped[str | None] = mapped_column(String(500))
    shared_inbox: Mapped[str | None] = mapped_column(String(500))
    outbox: Mapped[str | None] = mapped_column(String(500))
    #: True when the actor document says it is a Halles node (it carries a charter attestation).
    is_halles_node: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The actor document as last fetched (keys are read from it).
    document: Mapped[dict] = mapped_column(JSON, default=dict)
    fetched_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RemoteServer(db.Model):
    """Per-server settings learned or decided: signature flavour, block."""

    __tablename__ = "remote_servers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    #: "rfc9421" or "cavage": what this server accepted last (double knock result), None = unknown.
    signature_flavour: Mapped[str | None] = mapped_column(String(20))
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    blocked_at: Mapped[datetime | None] = mapped_column(DateTime)
    #: Last successful catch-up position in this server's outbox (opaque cursor of theirs).
    sync_cursor: Mapped[str | None] = mapped_column(String(500))
    synced_at: Mapped[datetime | None] = mapped_column(DateTime)


class Follow(db.Model):
    """A follow relation. incoming: they follow us (a peer asking with a charter attestation, or any
    fediverse account); outgoing: we follow them (peering request or event import)."""

    __tablename__ = "follows"
    __table_args__ = (UniqueConstraint("actor_id", "direction"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("remote_actors.id"))
    direction: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(10), default="pending")
    #: The Follow activity id (ours for outgoing, theirs for incoming).
    activity_id: Mapped[str] = mapped_column(String(500))
    #: For peering: {"url", "version", "sha256"} of the charter the follower attested.
    attestation: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)

    actor: Mapped[RemoteActor] = relationship()


class OutboxEntry(db.Model):
    """Every activity this node published, in order; the id is the catch-up cursor."""

    __tablename__ = "outbox_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    activity_id: Mapped[str] = mapped_column(String(500), unique=True)
    activity_type: Mapped[str] = mapped_column(String(40))
    #: The ap id of the object the activity is about (event, organisation...).
    object_id: Mapped[str] = mapped_column(String(500), index=True)
    #: "public" (everyone, fediverse followers) or "network" (charter peers only).
    audience: Mapped[str] = mapped_column(String(10))
    #: The signed activity exactly as delivered.
    activity: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Delivery(db.Model):
    """One activity to one inbox; written in the transaction of the change (transactional outbox)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("outbox_entry_id", "inbox_url"),
        Index("ix_deliveries_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    outbox_entry_id: Mapped[int] = mapped_column(ForeignKey("outbox_entries.id", ondelete="CASCADE"))
    inbox_url: Mapped[str] = mapped_column(String(500))
    domain: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_status: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)

    entry: Mapped[OutboxEntry] = relationship()


def shard_of(activity: dict) -> int:
    """A number fixed by the object an activity is about (its embedded object's id, the object URL, else
    the activity's own id): ``halles worker --processes N`` gives process ``k`` the items whose
    ``shard % N == k``, so the Create and the Updates of one event are applied by one process, in order.
    Computed when the item is stored: deriving it from the JSON in the claim query parsed every pending
    activity on every claim."""
    obj = activity.get("object")
    key = obj.get("id") if isinstance(obj, dict) else obj
    if not isinstance(key, str):
        key = activity.get("id")
    return zlib.crc32(str(key).encode()) & 0x7FFFFFFF


def _shard_default(context) -> int:
    return shard_of(context.get_current_parameters()["activity"])


class InboxItem(db.Model):
    """A verified activity waiting for (or done with) the worker. Idempotent by activity id."""

    __tablename__ = "inbox_items"
    __table_args__ = (Index("ix_inbox_items_state", "state", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    activity_id: Mapped[str] = mapped_column(String(500), unique=True)
    activity_type: Mapped[str] = mapped_column(String(40))
    #: The actor whose key signed the request.
    signer: Mapped[str] = mapped_column(String(500))
    activity: Mapped[dict] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(10), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime)
    #: ``shard_of(activity)``: which worker process applies it.
    shard: Mapped[int] = mapped_column(Integer, default=_shard_default, server_default="0")


class RemoteOrganisation(db.Model):
    """A member organisation of another node, holding only the fields its consent lets us see."""

    __tablename__ = "remote_organisations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ap_id: Mapped[str] = mapped_column(String(500), unique=True)
    origin_actor_id: Mapped[int] = mapped_column(ForeignKey("remote_actors.id"))
    name: Mapped[str] = mapped_column(String(200), default="")
    #: The consented fields as received (name, description, website, topics, contact...).
    fields: Mapped[dict] = mapped_column(JSON, default=dict)
    #: The origin's ``updated``; older updates are ignored.
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    origin: Mapped[RemoteActor] = relationship()


class Tombstone(db.Model):
    """A deleted local object: its URL answers 410 with an AS2 Tombstone."""

    __tablename__ = "tombstones"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ap_id: Mapped[str] = mapped_column(String(500), unique=True)
    former_type: Mapped[str] = mapped_column(String(40))
    deleted_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
