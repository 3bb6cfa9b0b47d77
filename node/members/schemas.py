"""Input and output shapes of the people API (marshmallow)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from node.members.models import ROLES
from node.organisations.schemas import LowerEmail, Trimmed

MIN_PASSWORD = 10
#: scrypt cost grows with input size; nobody types a longer password.
MAX_PASSWORD = 1024



def _role(**kwargs) -> fields.String:
    return fields.String(validate=validate.OneOf(ROLES, error=f"must be one of: {', '.join(ROLES)}"), **kwargs)


class UserCreateSchema(Schema):
    email = LowerEmail(required=True, validate=validate.Length(max=254))
    role = _role(required=True)
    organisation_id = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1))
    name = Trimmed(validate=validate.Length(max=200))


class UserUpdateSchema(Schema):
    role = _role()
    organisation_id = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1))
    name = Trimmed(validate=validate.Length(max=200))


class InvitationCreateSchema(Schema):
    email = LowerEmail(required=True, validate=validate.Length(max=254))
    role = _role(required=True)
    organisation_id = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1))


class PasswordField(fields.String):
    def __init__(self, **kwargs) -> None:
        super().__init__(
            validate=validate.Length(
                MIN_PASSWORD, MAX_PASSWORD, error=f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"
            ),
            metadata={"format": "password"},
            **kwargs,
        )


class InvitationAcceptSchema(Schema):
    name = Trimmed(required=True, validate=validate.Length(1, 200, error="must be 1 to 200 characters"))
    password = PasswordField(required=True, load_only=True)


class PasswordResetRequestSchema(Schema):
    email = LowerEmail(required=True, validate=validate.Length(max=254))


class PasswordResetSchema(Schema):
    password = PasswordField(required=True, load_only=True)


class UserOutSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    name = fields.String()
    role = fields.String()
    organisation_id = fields.Integer(allow_none=True)
    organisation_name = fields.String(allow_none=True)
    active = fields.Boolean()
    created_at = fields.String()
    deactivated_at = fields.String(allow_none=True)


class UserListSchema(Schema):
    items = fields.List(fields.Nested(UserOutSchema))
    next_cursor = fields.String(allow_none=True)


class InvitationOutSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    role = fields.String()
    organisation_id = fields.Integer(allow_none=True)
    invited_by_id = fields.Integer(allow_none=True)
    created_at = fields.String()
    expires_at = fields.String()
    accepted_at = fields.String(allow_none=True)
