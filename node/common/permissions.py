"""Who may do what: one table for the whole node, so the permission matrix test has one source.

Roles, from most to least powerful: admin, office_manager, org_manager (of one organisation), member.
Services call these with the acting user; they raise Unauthorized (no user) or Forbidden."""

from __future__ import annotations

from typing import Any

from node.common.errors import Forbidden, Unauthorized

STAFF = ("admin", "office_manager")


def _need_user(user: Any) -> None:
    if user is None:
        raise Unauthorized("this action needs an account: send 'Authorization: Bearer <token>' or sign in")


def is_staff(user: Any) -> bool:
    return user is not None and user.role in STAFF


def manages(user: Any, organisation_id: int | None) -> bool:
    """True for staff, and for the org_manager of that organisation."""
    if user is None:
        return False
    if user.role in STAFF:
        return True
    return user.role == "org_manager" and organisation_id is not None and user.organisation_id == organisation_id


def require_staff(user: Any, action: str) -> None:
    _need_user(user)
    if user.role not in STAFF:
        raise Forbidden(f"only the office manager or an admin can {action}")


def require_admin(user: Any, action: str) -> None:
    _need_user(user)
    if user.role != "admin":
        raise Forbidden(f"only an admin can {action}")


def require_manager_of(user: Any, organisation_id: int | None, action: str) -> None:
    _need_user(user)
    if not manages(user, organisation_id):
        raise Forbidden(f"only a manager of this organisation (or the office manager) can {action}")


def require_manager_of_any(user: Any, organisation_ids: list[int], action: str) -> None:
    _need_user(user)
    if user.role in STAFF:
        return
    if not any(manages(user, org_id) for org_id in organisation_ids):
        raise Forbidden(f"only a manager of an organising organisation (or the office manager) can {action}")
