"""Federation state: remote actors we know (peers, followers, followed accounts)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from node.common.timeutil import utcnow
from node.extensions import db


class RemoteActor(db.Model):
    __tablename__ = "remote_actors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ap_id: Mapped[str] = mapped_column(String(500), unique=True)
    #: host[:port] of ap_id, for domain blocks and per-server settings.
    domain: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    city: Mapped[str] = mapped_column(String(120), default="")
    inbox: Mapped[str | None] = mapped_column(String(500))
    shared_inbox: Mapped[str | None] = mapped_column(String(500))
    #: The actor document as last fetched.
    document: Mapped[dict] = mapped_column(JSON, default=dict)
    fetched_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
