"""Helpers shared by the organisations, members and charters tests: a cast of people with every
role, and row counts to prove that refused requests changed nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

#: Every role a permission matrix checks, in the order of the brief.
WHO = ("anonymous", "member", "manager_a", "manager_b", "office_manager", "admin")


@dataclass
class Cast:
    org_a: int
    org_b: int
    ids: dict[str, int] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    def h(self, who: str) -> dict[str, str]:
        return self.headers.get(who, {})


def make_cast(make_org, make_user) -> Cast:
    """Organisation A (with its member and manager), organisation B (with its manager), the office
    manager and an admin, each with an API token."""
    org_a = make_org("Quartiers en Commun", contact_email="contact@qec.example.org").id
    org_b = make_org("Voix des Habitants").id
    cast = Cast(org_a=org_a, org_b=org_b)
    for who, role, org in (
        ("member", "member", org_a),
        ("manager_a", "org_manager", org_a),
        ("manager_b", "org_manager", org_b),
        ("office_manager", "office_manager", None),
        ("admin", "admin", None),
    ):
        user_id, headers = make_user(role, org, email=f"{who.replace('_', '-')}@example.org")
        cast.ids[who] = user_id
        cast.headers[who] = headers
    return cast


def row_counts(app) -> dict[str, int]:
    """Rows of every table these domains write to."""
    from node.charters.models import CharterSignature, CharterVersion
    from node.extensions import db
    from node.mail.models import OutgoingEmail
    from node.members.models import ApiToken, Invitation, PasswordReset, User
    from node.organisations.models import Organisation

    with app.app_context():
        counts = {
            model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
            for model in (Organisation, User, ApiToken, Invitation, PasswordReset, CharterVersion, CharterSignature,
                          OutgoingEmail)
        }
        db.session.remove()
    return counts


def snapshot(app, model, row_id: int) -> dict[str, Any]:
    """Column values of one row, to show a refused update left it as it was."""
    from node.extensions import db

    with app.app_context():
        row = db.session.get(model, row_id)
        values = {column.key: getattr(row, column.key) for column in model.__table__.columns}
        db.session.remove()
    return values
