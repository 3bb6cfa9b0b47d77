"""People API: accounts (/api/v1/users), invitations and password resets."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from node.common.api import BadRequest, created, load
from node.common.auth import api_login_required, require_actor
from node.common.errors import Forbidden
from node.common.pagination import decode_cursor, encode_cursor
from node.common.permissions import is_staff, require_staff
from node.common.ratelimit import rate_limited
from node.extensions import db
from node.members import services
from node.members.models import ROLES
from node.members.schemas import (
    InvitationAcceptSchema,
    InvitationCreateSchema,
    InvitationOutSchema,
    PasswordResetRequestSchema,
    PasswordResetSchema,
    UserCreateSchema,
    UserListSchema,
    UserOutSchema,
    UserUpdateSchema,
)

api = Blueprint("members_api", __name__, url_prefix="/api/v1")

DEFAULT_PAGE = 100
MAX_PAGE = 500


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise BadRequest(f"{name} must be a whole number")
    return int(raw)


@api.get("/users")
@api_login_required
def list_users():
    actor = require_actor()
    require_staff(actor, "list accounts")
    limit = _int_arg("limit")
    limit = DEFAULT_PAGE if limit is None else limit
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be from 1 to {MAX_PAGE}")
    after = 0
    if request.args.get("cursor"):
        (after,) = decode_cursor(request.args["cursor"], 1)
        if not isinstance(after, int):
            raise BadRequest("the cursor is not one this server issued; start again without it")
    role = request.args.get("role") or None
    if role is not None and role not in ROLES:
        raise BadRequest(f"role must be one of: {', '.join(ROLES)}")
    active_arg = request.args.get("active", "").lower()
    if active_arg not in ("", "true", "false", "1", "0"):
        raise BadRequest("active must be true or false")
    active = None if active_arg == "" else active_arg in ("true", "1")
    users, more = services.list_users(
        actor, after_id=after, limit=limit, role=role, organisation_id=_int_arg("organisation_id"), active=active
    )
    return jsonify(
        {"items": [services.user_dict(u) for u in users], "next_cursor": encode_cursor(users[-1].id) if more else None}
    )


@api.post("/users")
@api_login_required
def create_user():
    actor = require_actor()
    require_staff(actor, "create accounts")
    data = load(UserCreateSchema())
    user = services.create_user(
        actor, data["email"], data["role"], data.get("organisation_id"), data.get("name", "")
    )
    db.session.commit()
    return created(services.user_dict(user), location=f"/api/v1/users/{user.id}")


@api.get("/users/me")
@api_login_required
def me():
    return jsonify(services.user_dict(require_actor()))


@api.get("/users/<int:user_id>")
@api_login_required
def get_user(user_id: int):
    actor = require_actor()
    if actor.id != user_id and not is_staff(actor):
        raise Forbidden("only the office manager or an admin can see other people's accounts")
    return jsonify(services.user_dict(services.get_user(user_id)))


@api.patch("/users/<int:user_id>")
@api_login_required
def update_user(user_id: int):
    actor = require_actor()
    if actor.id != user_id and not is_staff(actor):
        raise Forbidden("only the office manager or an admin can change other people's accounts")
    user = services.get_user(user_id)
    data = load(UserUpdateSchema())
    services.update_user(actor, user, data)
    db.session.commit()
    return jsonify(services.user_dict(user))


@api.post("/users/<int:user_id>/deactivate")
@api_login_required
def deactivate_user(user_id: int):
    actor = require_actor()
    require_staff(actor, "deactivate accounts")
    user = services.get_user(user_id)
    services.deactivate_user(actor, user)
    db.session.commit()
    return jsonify(services.user_dict(user))


@api.get("/invitations")
@api_login_required
def list_invitations():
    actor = require_actor()
    return jsonify({"items": [services.invitation_dict(i) for i in services.pending_invitations(actor)]})


@api.post("/invitations")
@api_login_required
def invite():
    actor = require_actor()
    require_staff(actor, "invite people")
    data = load(InvitationCreateSchema())
    invitation, _token = services.invite(actor, data["email"], data["role"], data.get("organisation_id"))
    db.session.commit()
    # The token travels only by email, to the invited address.
    return created(services.invitation_dict(invitation))


@api.post("/invitations/<token>/accept")
def accept_invitation(token: str):
    services.find_invitation(token)  # a dead link says so before the form's content is judged
    data = load(InvitationAcceptSchema())
    user = services.accept_invitation(token, data["name"], data["password"])
    db.session.commit()
    return created(services.user_dict(user), location=f"/api/v1/users/{user.id}")


@api.post("/password-resets")
@rate_limited("login")
def request_password_reset():
    data = load(PasswordResetRequestSchema())
    services.request_password_reset(data["email"])
    db.session.commit()
    response = jsonify({"detail": "if this address has an account, a link to choose a new password is on its way"})
    response.status_code = 202
    return response


@api.post("/password-resets/<token>")
def reset_password(token: str):
    data = load(PasswordResetSchema())
    services.reset_password(token, data["password"])
    db.session.commit()
    return jsonify({"detail": "your password is changed; sign in with it"})


_PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
_PROBLEM_TEXT = {
    "400": "bad request (not JSON, bad query parameter)",
    "401": "no or bad token",
    "403": "not allowed for this role",
    "404": "not found (or unknown link)",
    "409": "conflict (existing account, last admin, deactivated account)",
    "410": "the link expired or was already used",
    "415": "the body is not JSON",
    "422": "invalid fields",
    "429": "too many attempts from this address (Retry-After says when to try again)",
}


def _problems(*codes: str) -> dict:
    return {code: {"description": _PROBLEM_TEXT[code], "content": _PROBLEM_CONTENT} for code in codes}


def _json(schema: str) -> dict:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


_DETAIL = {"application/json": {"schema": {"type": "object", "properties": {"detail": {"type": "string"}}}}}
_USER_ID = [{"name": "user_id", "in": "path", "required": True, "schema": {"type": "integer"}}]
_TOKEN = [{"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}]
_SECURE = [{"bearer": []}]

OPENAPI_SCHEMAS = {
    "User": UserOutSchema,
    "UserList": UserListSchema,
    "UserCreate": UserCreateSchema,
    "UserUpdate": UserUpdateSchema,
    "Invitation": InvitationOutSchema,
    "InvitationCreate": InvitationCreateSchema,
    "InvitationAccept": InvitationAcceptSchema,
    "PasswordResetRequest": PasswordResetRequestSchema,
    "PasswordReset": PasswordResetSchema,
}

OPENAPI_PATHS = {
    "/api/v1/users": {
        "get": {
            "summary": "Accounts of this node (staff)",
            "tags": ["people"],
            "security": _SECURE,
            "parameters": [
                {"name": "role", "in": "query", "schema": {"type": "string", "enum": list(ROLES)}},
                {"name": "organisation_id", "in": "query", "schema": {"type": "integer"}},
                {"name": "active", "in": "query", "schema": {"type": "boolean"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {"200": {"description": "a page of accounts", "content": _json("UserList")},
                          **_problems("400", "401", "403")},
        },
        "post": {
            "summary": "Create an account without password (admin: any role; office manager: org_manager, member)",
            "tags": ["people"],
            "security": _SECURE,
            "requestBody": {"required": True, "content": _json("UserCreate")},
            "responses": {"201": {"description": "created", "content": _json("User")},
                          **_problems("400", "401", "403", "409", "415", "422")},
        },
    },
    "/api/v1/users/me": {
        "get": {
            "summary": "The account of the token's owner",
            "tags": ["people"],
            "security": _SECURE,
            "responses": {"200": {"description": "your account", "content": _json("User")}, **_problems("401")},
        }
    },
    "/api/v1/users/{user_id}": {
        "get": {
            "parameters": _USER_ID,
                "summary": "One account (staff, or yourself)",
            "tags": ["people"],
            "security": _SECURE,
            "responses": {"200": {"description": "the account", "content": _json("User")},
                          **_problems("401", "403", "404")},
        },
        "patch": {
            "parameters": _USER_ID,
                    "summary": "Change name, role or organisation (people rename themselves; roles as for creation)",
            "tags": ["people"],
            "security": _SECURE,
            "requestBody": {"required": True, "content": _json("UserUpdate")},
            "responses": {"200": {"description": "changed", "content": _json("User")},
                          **_problems("400", "401", "403", "404", "409", "415", "422")},
        },
    },
    "/api/v1/users/{user_id}/deactivate": {
        "post": {
            "parameters": _USER_ID,
                "summary": "Deactivate an account: history kept, tokens revoked (staff)",
            "tags": ["people"],
            "security": _SECURE,
            "responses": {"200": {"description": "deactivated", "content": _json("User")},
                          **_problems("401", "403", "404", "409")},
        },
    },
    "/api/v1/invitations": {
        "get": {
            "summary": "Pending invitations (staff)",
            "tags": ["people"],
            "security": _SECURE,
            "responses": {"200": {"description": "pending invitations", "content": {"application/json": {"schema": {
                "type": "object",
                "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Invitation"}}},
            }}}}, **_problems("401", "403")},
        },
        "post": {
            "summary": "Invite someone by email; the link (valid 14 days) is only in the email",
            "tags": ["people"],
            "security": _SECURE,
            "requestBody": {"required": True, "content": _json("InvitationCreate")},
            "responses": {"201": {"description": "invitation queued", "content": _json("Invitation")},
                          **_problems("400", "401", "403", "409", "415", "422")},
        },
    },
    "/api/v1/invitations/{token}/accept": {
        "post": {
            "parameters": _TOKEN,
                "summary": "Accept an invitation: creates (or reactivates) the account",
            "tags": ["people"],
            "requestBody": {"required": True, "content": _json("InvitationAccept")},
            "responses": {"201": {"description": "account ready", "content": _json("User")},
                          **_problems("400", "404", "409", "410", "415", "422")},
        },
    },
    "/api/v1/password-resets": {
        "post": {
            "summary": "Ask for a password reset link by email (same answer whether the address exists or not)",
            "tags": ["people"],
            "requestBody": {"required": True, "content": _json("PasswordResetRequest")},
            "responses": {"202": {"description": "accepted", "content": _DETAIL},
                          **_problems("400", "415", "422", "429")},
        },
    },
    "/api/v1/password-resets/{token}": {
        "post": {
            "parameters": _TOKEN,
                "summary": "Choose a new password with the link's token",
            "tags": ["people"],
            "requestBody": {"required": True, "content": _json("PasswordReset")},
            "responses": {"200": {"description": "password changed", "content": _DETAIL},
                          **_problems("400", "404", "410", "415", "422")},
        },
    },
}
