"""Who is asking: a Bearer token (API) or the signed-in session (web pages)."""

from __future__ import annotations

import hashlib
import secrets
from functools import wraps
from typing import Any

from flask import g, request
from flask_login import current_user

from node.common.errors import Forbidden, Unauthorized
from node.common.timeutil import utcnow
from node.extensions import db

TOKEN_PREFIX = "hl_"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def _user_from_bearer() -> Any:
    from node.members.models import ApiToken

    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized(
            "the Authorization header must be 'Bearer <token>'; create one with `halles token create EMAIL`"
        )
    token = db.session.scalar(db.select(ApiToken).where(ApiToken.token_hash == hash_secret(value.strip())))
    if token is None or token.revoked_at is not None:
        raise Unauthorized("this API token is unknown or revoked; create a new one with `halles token create EMAIL`")
    if not token.user.active:
        raise Unauthorized("this account is deactivated")
    token.last_used_at = utcnow()
    return token.user


def current_actor() -> Any:
    """The User making this request, or None for an anonymous visitor."""
    if "halles_actor" not in g:
        user = _user_from_bearer()
        if user is None and current_user and current_user.is_authenticated:
            user = current_user._get_current_object()
        g.halles_actor = user
    return g.halles_actor


def require_actor() -> Any:
    user = current_actor()
    if user is None:
        raise Unauthorized("this action needs an account: send 'Authorization: Bearer <token>' or sign in")
    return user


def api_login_required(view):
    """Decorator for API write endpoints: a Bearer token (or a session) is required."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        require_actor()
        return view(*args, **kwargs)

    return wrapper


def require_role(user: Any, *roles: str) -> None:
    if user is None:
        raise Unauthorized("this action needs an account")
    if user.role not in roles:
        raise Forbidden(f"this action is reserved to: {', '.join(roles)} (you are {user.role})")
