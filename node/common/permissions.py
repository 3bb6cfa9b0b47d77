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


def require_user(user: Any) -> None:
    """Any signed-in person (a Bearer token or a session); Unauthorized for an anonymous visitor."""
    _need_user(user)


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


#: Which roles each role may give (create, invite, promote to). The office manager runs day-to-day
#: membership but cannot mint staff accounts: only an admin can.
ASSIGNABLE_ROLES: dict[str, tuple[str, ...]] = {
    "admin": ("admin", "office_manager", "org_manager", "member"),
    "office_manager": ("org_manager", "member"),
}


def can_assign_role(user: Any, role: str) -> bool:
    return user is not None and role in ASSIGNABLE_ROLES.get(user.role, ())


def require_can_assign_role(user: Any, role: str, action: str) -> None:
    _need_user(user)
    if user.role not in ASSIGNABLE_ROLES:
        raise Forbidden(f"only the office manager or an admin can {action}")
    if not can_assign_role(user, role):
        allowed = ", ".join(ASSIGNABLE_ROLES[user.role])
        raise Forbidden(f"as {user.role} you can {action} only with the roles: {allowed}; ask an admin for {role}")


def require_can_manage_user(user: Any, target: Any, action: str) -> None:
    """Staff manage accounts, but an office manager only those of org managers and members."""
    _need_user(user)
    if user.role not in ASSIGNABLE_ROLES:
        raise Forbidden(f"only the office manager or an admin can {action}")
    if not can_assign_role(user, target.role):
        raise Forbidden(f"only an admin can {action} of a {target.role}")


def directory_scope(user: Any, organisation_id: int | None) -> str:
    """How much of an organisation's directory entry ``user`` may see: "public" (anonymous visitors),
    "network" (people with an account on this node) or "all" (staff and the organisation's managers)."""
    if user is None or not getattr(user, "active", True):
        return "public"
    if manages(user, organisation_id):
        return "all"
    return "network"


#: Roles that may publish events: a member organisation's manager, or staff.
EVENT_PUBLISHERS = ("admin", "office_manager", "org_manager")


def event_visibilities(user: Any) -> tuple[str, ...]:
    """Which event visibilities ``user`` may see: anonymous visitors see public events; any signed-in
    person also sees ``network`` and ``members`` ones. (Federation peers are handled by the fedi layer.)"""
    if user is None or not getattr(user, "active", True):
        return ("public",)
    return ("public", "network", "members")


def require_event_publisher(user: Any) -> None:
    _need_user(user)
    if user.role not in EVENT_PUBLISHERS:
        raise Forbidden(
            "only an organisation manager or the office manager can publish events; ask your organisation's manager"
        )


def require_event_manager(user: Any, organiser_ids: list[int], action: str) -> None:
    """Change an event, or see who registered: staff, or a manager of one of its organisers."""
    require_manager_of_any(user, organiser_ids, action)
