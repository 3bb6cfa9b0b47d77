"""Charter rules: which version is current, and whether an organisation signed it."""

from __future__ import annotations

from sqlalchemy import select

from node.charters.models import CharterSignature, CharterVersion
from node.extensions import db


def current_version() -> CharterVersion | None:
    return db.session.scalar(select(CharterVersion).where(CharterVersion.is_current.is_(True)))


def has_signed_current(organisation_id: int | None) -> bool:
    """True when the organisation signed the current charter, or when no charter is published yet."""
    if organisation_id is None:
        return False
    version = current_version()
    if version is None:
        return True
    return (
        db.session.scalar(
            select(CharterSignature.id).where(
                CharterSignature.organisation_id == organisation_id,
                CharterSignature.charter_version_id == version.id,
                CharterSignature.sha256 == version.sha256,
            )
        )
        is not None
    )
