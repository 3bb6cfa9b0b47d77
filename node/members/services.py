"""People: accounts, roles, API tokens, invitations and password resets.

Secrets (API tokens, invitation and reset links) are random, shown once, and stored only as their
SHA-256, so a copy of the database does not let anyone in. Passwords are scrypt hashes (werkzeug).
``actor=None`` means the command line (the person at the server's shell), never an anonymous visitor:
views always pass the signed-in user."""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from typing import Any

from flask import current_app
from sqlalchemy import func, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from node.common.auth import TOKEN_PREFIX, hash_secret, new_secret
from node.common.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound
from node.common.permissions import require_can_assign_role, require_can_manage_user, require_staff
from node.common.timeutil import iso_utc, utcnow
from node.extensions import db
from node.mail.services import queue_email
from node.members.models import ROLES, ApiToken, Invitation, PasswordReset, User
from node.organisations.models import Organisation

INVITATION_VALIDITY = timedelta(days=14)
RESET_VALIDITY = timedelta(hours=2)
#: A reset link per hour is plenty; more would let anyone flood a mailbox through the form.
MAX_RESETS_PER_HOUR = 3
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: Link tokens arrive in URLs; anything longer than this was not issued here.
MAX_LINK_TOKEN = 200

ROLE_NAMES = {
    "admin": ("administrateur·rice du nœud", "node administrator"),
    "office_manager": ("chargé·e de la gestion du lieu", "office manager"),
    "org_manager": ("responsable d'organisation membre", "manager of a member organisation"),
    "member": ("membre", "member"),
}


# -- helpers ---------------------------------------------------------------------------------------


def normalise_email(email: str) -> str:
    address = (email or "").strip().lower()
    if len(address) > 254 or not EMAIL_PATTERN.match(address):
        raise InvalidInput(f"{email!r} is not an email address")
    return address


def check_password_rules(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InvalidInput(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"the password must have at most {MAX_PASSWORD} characters")


def _check_role(role: str, organisation_id: int | None) -> Organisation | None:
    """The role must exist; org_manager needs an organisation; the organisation must be active."""
    if role not in ROLES:
        raise InvalidInput(f"role {role!r} does not exist; use one of: {', '.join(ROLES)}")
    if role == "org_manager" and organisation_id is None:
        raise InvalidInput("an org_manager manages one organisation: give organisation_id")
    if organisation_id is None:
        return None
    organisation = db.session.get(Organisation, organisation_id)
    if organisation is None:
        raise InvalidInput(f"organisation_id: there is no organisation {organisation_id}")
    if organisation.deleted_at is not None:
        raise InvalidInput(f"organisation_id: organisation {organisation_id} ({organisation.name}) has left the place")
    return organisation


def _link_token_hash(token: str) -> str | None:
    if not isinstance(token, str) or not token or len(token) > MAX_LINK_TOKEN:
        return None
    return hash_secret(token)


def _other_active_admins(user: User) -> int:
    return db.session.scalar(
        select(func.count(User.id)).where(User.role == "admin", User.active.is_(True), User.id != user.id)
    ) or 0


def _place() -> str:
    return current_app.config["HALLES_NAME"]


def _url(path: str) -> str:
    return f"{current_app.config['HALLES_URL']}{path}"


def user_dict(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "organisation_id": user.organisation_id,
        "organisation_name": user.organisation.name if user.organisation is not None else None,
        "active": user.active,
        "created_at": iso_utc(user.created_at),
        "deactivated_at": iso_utc(user.deactivated_at),
    }


def invitation_dict(invitation: Invitation) -> dict[str, Any]:
    return {
        "id": invitation.id,
        "email": invitation.email,
        "role": invitation.role,
        "organisation_id": invitation.organisation_id,
        "invited_by_id": invitation.invited_by_id,
        "created_at": iso_utc(invitation.created_at),
        "expires_at": iso_utc(invitation.expires_at),
        "accepted_at": iso_utc(invitation.accepted_at),
    }


# -- accounts --------------------------------------------------------------------------------------


def get_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(f"there is no user {user_id}")
    return user


def find_user_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == (email or "").strip().lower()))


def create_user(actor: Any, email: str, role: str, organisation_id: int | None = None, name: str = "") -> User:
    """Create an account without a password (set one with ``set_password``, an invitation or a reset).
    An admin creates any role, the office manager org managers and members. Does not commit."""
    if actor is not None:
        require_can_assign_role(actor, role, "create accounts")
    address = normalise_email(email)
    _check_role(role, organisation_id)
    name = (name or "").strip()
    if len(name) > 200:
        raise InvalidInput("the name must have at most 200 characters")
    existing = find_user_by_email(address)
    if existing is not None:
        state = "an active" if existing.active else "a deactivated"
        raise Conflict(f"{address} already has {state} account (user {existing.id}, {existing.role}); "
                       "invite them again to reactivate it")
    user = User(email=address, name=name, role=role, organisation_id=organisation_id, active=True)
    db.session.add(user)
    db.session.flush()
    return user


def set_password(user: User, password: str) -> None:
    check_password_rules(password)
    user.password_hash = generate_password_hash(password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return generate_password_hash("not a real password, only here to spend the same time")


def authenticate(email: str, password: str) -> User | None:
    """The active user with this email and password, or None (same work either way, so the answer
    time does not reveal which addresses have accounts)."""
    user = find_user_by_email(email) if isinstance(email, str) else None
    if not isinstance(password, str) or not password or len(password) > MAX_PASSWORD:
        return None
    if user is None or not user.password_hash:
        check_password_hash(_dummy_hash(), password)
        return None
    if not check_password_hash(user.password_hash, password) or not user.active:
        return None
    return user


def issue_token(user: User, label: str = "") -> str:
    """A new API token for ``user``; the plain token is returned once, only its hash is stored."""
    if not user.active:
        raise Conflict(f"{user.email} is deactivated; tokens cannot be issued for it")
    label = (label or "").strip()
    if len(label) > 100:
        raise InvalidInput("the token label must have at most 100 characters")
    secret = new_secret(TOKEN_PREFIX)
    db.session.add(ApiToken(user_id=user.id, token_hash=hash_secret(secret), label=label))
    db.session.flush()
    return secret


def revoke_tokens(user: User) -> int:
    result = db.session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return result.rowcount or 0


def update_user(actor: Any, user: User, values: dict[str, Any]) -> User:
    """Change ``name``, ``role`` and/or ``organisation_id``. People may rename themselves; role and
    organisation follow the same limits as creating accounts. Does not commit."""
    unknown = set(values) - {"name", "role", "organisation_id"}
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}")
    if actor is None:
        raise Forbidden("changing an account needs an acting user")
    changes_access = "role" in values or "organisation_id" in values
    if changes_access or actor.id != user.id:
        require_can_manage_user(actor, user, "change the account")
    if not user.active:
        raise Conflict(f"{user.email} is deactivated; invite them again to reactivate the account")
    if changes_access:
        role = values.get("role", user.role)
        organisation_id = values["organisation_id"] if "organisation_id" in values else user.organisation_id
        if role != user.role:
            require_can_assign_role(actor, role, "give roles")
        _check_role(role, organisation_id)
        if user.role == "admin" and role != "admin" and _other_active_admins(user) == 0:
            raise Conflict("this is the last active admin; make someone else admin first")
        user.role = role
        user.organisation_id = organisation_id
    if "name" in values:
        name = (values["name"] or "").strip()
        if len(name) > 200:
            raise InvalidInput("the name must have at most 200 characters")
        user.name = name
    db.session.flush()
    return user


def deactivate_user(actor: Any, user: User) -> User:
    """Close an account but keep its history (bookings, signatures, invitations it sent): the person
    can no longer sign in, their tokens and reset links stop working. Idempotent. Does not commit."""
    if actor is not None:
        require_can_manage_user(actor, user, "deactivate the account")
    if not user.active:
        return user
    if user.role == "admin" and _other_active_admins(user) == 0:
        raise Conflict("this is the last active admin; make someone else admin before deactivating this account")
    now = utcnow()
    user.active = False
    user.deactivated_at = now
    revoke_tokens(user)
    db.session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
    )
    db.session.flush()
    return user


def list_users(
    actor: Any,
    *,
    after_id: int = 0,
    limit: int = 100,
    role: str | None = None,
    organisation_id: int | None = None,
    active: bool | None = None,
) -> tuple[list[User], bool]:
    require_staff(actor, "list accounts")
    query = select(User).where(User.id > after_id).order_by(User.id).limit(limit + 1)
    if role is not None:
        query = query.where(User.role == role)
    if organisation_id is not None:
        query = query.where(User.organisation_id == organisation_id)
    if active is not None:
        query = query.where(User.active.is_(active))
    users = list(db.session.scalars(query))
    return users[:limit], len(users) > limit


# -- invitations -----------------------------------------------------------------------------------


def _invitation_email(invitation: Invitation, token: str, organisation: Organisation | None) -> tuple[str, str]:
    role_fr, role_en = ROLE_NAMES[invitation.role]
    org_fr = f" pour {organisation.name}" if organisation else ""
    org_en = f" for {organisation.name}" if organisation else ""
    link = _url(f"/invitations/{token}")
    until = iso_utc(invitation.expires_at)
    # The queue's subject column holds 300 characters; a long place name must not break inviting.
    subject = f"[{_place()}] Invitation à rejoindre {_place()} / Invitation to join {_place()}"[:300]
    body = (
        f"Bonjour,\n\n"
        f"Vous êtes invité·e à rejoindre {_place()} comme {role_fr}{org_fr}.\n"
        f"Pour créer votre compte, ouvrez ce lien (valable jusqu'au {until}, UTC) :\n\n"
        f"{link}\n\n"
        f"Si vous ne vous attendiez pas à ce message, ignorez-le : rien ne sera créé.\n\n"
        f"---\n\n"
        f"Hello,\n\n"
        f"You are invited to join {_place()} as {role_en}{org_en}.\n"
        f"To create your account, open this link (valid until {until}, UTC):\n\n"
        f"{link}\n\n"
        f"If you did not expect this message, ignore it: nothing will be created.\n"
    )
    return subject, body


def invite(actor: Any, email: str, role: str, organisation_id: int | None) -> tuple[Invitation, str]:
    """Invite someone by email with a role; returns the invitation and the plain link token (sent by
    email, stored hashed). Does not commit; the email is queued in the same transaction."""
    require_can_assign_role(actor, role, "invite people")
    address = normalise_email(email)
    organisation = _check_role(role, organisation_id)
    existing = find_user_by_email(address)
    if existing is not None and existing.active:
        raise Conflict(f"{address} already has an active account (user {existing.id}); change its role instead")
    token = new_secret()
    now = utcnow()
    invitation = Invitation(
        email=address,
        role=role,
        organisation_id=organisation_id,
        token_hash=hash_secret(token),
        invited_by_id=getattr(actor, "id", None),
        created_at=now,
        expires_at=now + INVITATION_VALIDITY,
    )
    db.session.add(invitation)
    db.session.flush()
    subject, body = _invitation_email(invitation, token, organisation)
    queue_email(address, subject, body)
    return invitation, token


def find_invitation(token: str) -> Invitation:
    """The invitation of a link token, or a 404/410 saying why it cannot be used."""
    digest = _link_token_hash(token)
    invitation = None
    if digest is not None:
        invitation = db.session.scalar(select(Invitation).where(Invitation.token_hash == digest))
    if invitation is None:
        raise NotFound("this invitation link is not valid; check that you copied all of it, or ask for a new one")
    if invitation.accepted_at is not None:
        raise Gone(f"this invitation was already used on {iso_utc(invitation.accepted_at)}; sign in instead")
    if invitation.expires_at <= utcnow():
        raise Gone(f"this invitation expired on {iso_utc(invitation.expires_at)}; ask the office manager for a new one")
    return invitation


def accept_invitation(token: str, name: str, password: str) -> User:
    """Create the invited account (or reactivate a deactivated one) with a name and password. Does
    not commit."""
    invitation = find_invitation(token)
    name = (name or "").strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("give your name (1 to 200 characters)")
    check_password_rules(password)
    if invitation.organisation_id is not None:
        organisation = db.session.get(Organisation, invitation.organisation_id)
        if organisation is None or organisation.deleted_at is not None:
            raise Conflict("the organisation of this invitation has left the place; ask the office manager")
    user = find_user_by_email(invitation.email)
    if user is not None and user.active:
        raise Conflict(f"{invitation.email} already has an account; sign in, or reset the password if you forgot it")
    if user is None:
        user = User(email=invitation.email)
        db.session.add(user)
    user.name = name
    user.role = invitation.role
    user.organisation_id = invitation.organisation_id
    user.active = True
    user.deactivated_at = None
    set_password(user, password)
    invitation.accepted_at = utcnow()
    db.session.flush()
    return user


def pending_invitations(actor: Any) -> list[Invitation]:
    require_staff(actor, "see invitations")
    return list(
        db.session.scalars(
            select(Invitation)
            .where(Invitation.accepted_at.is_(None), Invitation.expires_at > utcnow())
            .order_by(Invitation.created_at.desc(), Invitation.id.desc())
        )
    )


# -- password resets -------------------------------------------------------------------------------


def request_password_reset(email: str) -> None:
    """Queue an email with a reset link to the active account of ``email``. Says nothing either way,
    so the form cannot be used to find out who has an account. Does not commit."""
    user = find_user_by_email(email) if isinstance(email, str) else None
    if user is None or not user.active:
        return
    now = utcnow()
    recent = db.session.scalar(
        select(func.count(PasswordReset.id)).where(
            PasswordReset.user_id == user.id, PasswordReset.created_at > now - timedelta(hours=1)
        )
    ) or 0
    if recent >= MAX_RESETS_PER_HOUR:
        return
    token = new_secret()
    db.session.add(
        PasswordReset(user_id=user.id, token_hash=hash_secret(token), created_at=now, expires_at=now + RESET_VALIDITY)
    )
    link = _url(f"/password-reset/{token}")
    minutes = int(RESET_VALIDITY.total_seconds() // 60)
    queue_email(
        user.email,
        f"[{_place()}] Nouveau mot de passe / New password"[:300],
        (
            f"Bonjour,\n\nQuelqu'un (sans doute vous) a demandé à changer le mot de passe de votre compte "
            f"sur {_place()}. Choisissez-en un nouveau ici (lien valable {minutes} minutes) :\n\n{link}\n\n"
            f"Si vous n'avez rien demandé, ignorez ce message : votre mot de passe ne change pas.\n\n---\n\n"
            f"Hello,\n\nSomeone (probably you) asked to change the password of your account on {_place()}. "
            f"Choose a new one here (link valid for {minutes} minutes):\n\n{link}\n\n"
            f"If you did not ask, ignore this message: your password stays the same.\n"
        ),
    )
    db.session.flush()


def find_password_reset(token: str) -> PasswordReset:
    """The pending reset of a link token, or a 404/410 saying why it cannot be used (a web page can
    call this before showing its form)."""
    digest = _link_token_hash(token)
    reset = None
    if digest is not None:
        reset = db.session.scalar(select(PasswordReset).where(PasswordReset.token_hash == digest))
    if reset is None:
        raise NotFound("this password reset link is not valid; ask for a new one")
    if reset.used_at is not None:
        raise Gone("this password reset link was already used; ask for a new one")
    if reset.expires_at <= utcnow():
        raise Gone(f"this password reset link expired on {iso_utc(reset.expires_at)}; ask for a new one")
    if not reset.user.active:
        raise Gone("this account is deactivated; ask the office manager")
    return reset


def reset_password(token: str, new_password: str) -> User:
    """Set a new password with a reset link; the link then stops working, as do the person's other
    pending links. Does not commit."""
    reset = find_password_reset(token)
    now = utcnow()
    user = reset.user
    check_password_rules(new_password)
    set_password(user, new_password)
    db.session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
    )
    db.session.flush()
    return user
