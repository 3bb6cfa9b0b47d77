"""Charter versions and the organisations' signatures of them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from node.common.timeutil import utcnow
from node.extensions import db


class CharterVersion(db.Model):
    __tablename__ = "charter_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(40), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    #: The rendered text (French first, then English), exactly what is hashed and signed.
    body: Mapped[str] = mapped_column(Text)
    #: SHA-256 hex of ``body`` encoded as UTF-8.
    sha256: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    #: Exactly one version is current; publishing a new one clears the flag on the others.
    is_current: Mapped[bool] = mapped_column(Boolean, default=False)


class CharterSignature(db.Model):
    __tablename__ = "charter_signatures"
    __table_args__ = (UniqueConstraint("organisation_id", "charter_version_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    charter_version_id: Mapped[int] = mapped_column(ForeignKey("charter_versions.id"))
    signed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    signed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    #: The hash the signer saw; equals the version's sha256 at signing time.
    sha256: Mapped[str] = mapped_column(String(64))

    charter_version: Mapped[CharterVersion] = relationship()
