"""Member organisations of the third-place."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from node.common.timeutil import utcnow
from node.extensions import db

#: Fields an organisation may publish, each with a consent scope.
DIRECTORY_FIELDS = ("name", "description", "website", "topics", "contact_email", "contact_phone", "city")
CONSENT_SCOPES = ("public", "network", "private")
#: What an organisation shares before its manager chooses: name and description only.
DEFAULT_CONSENT = {
    "name": "public",
    "description": "public",
    "website": "public",
    "topics": "public",
    "contact_email": "private",
    "contact_phone": "private",
    "city": "public",
}


class Organisation(db.Model):
    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    #: Resident organisations work in the place and pay the resident tariff.
    resident: Mapped[bool] = mapped_column(Boolean, default=False)
    desks_held: Mapped[int] = mapped_column(Integer, default=0)
    contact_email: Mapped[str | None] = mapped_column(String(254))
    contact_phone: Mapped[str | None] = mapped_column(String(40))
    #: Where the organisation is based; None means the node's own city (HALLES_CITY).
    city: Mapped[str | None] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    website: Mapped[str | None] = mapped_column(String(500))
    topics: Mapped[list] = mapped_column(JSON, default=list)
    #: field name -> "public" | "network" | "private" (DIRECTORY_FIELDS).
    consent: Mapped[dict] = mapped_column(JSON, default=lambda: dict(DEFAULT_CONSENT))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    #: Set when the organisation leaves; the row stays for history (bookings, signatures).
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime)

    @property
    def active(self) -> bool:
        return self.deleted_at is None
