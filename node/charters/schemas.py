"""Input and output shapes of the charter API (marshmallow)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from node.charters.services import VERSION_PATTERN

SHA256_HEX = r"^[0-9a-fA-F]{64}$"


class CharterVersionInSchema(Schema):
    version = fields.String(
        required=True,
        validate=validate.Regexp(
            VERSION_PATTERN, error="use 1 to 40 letters, digits, dots, hyphens or underscores, e.g. 1.1"
        ),
    )
    title = fields.String(required=True, validate=validate.Length(1, 200))
    body = fields.String(
        required=True,
        validate=validate.Length(1, 200_000),
        metadata={"description": "Markdown text or template; {{ place_name }}, {{ city }}, {{ url }}, "
                                 "{{ version }} and {{ date }} are replaced before hashing."},
    )


class SignatureInSchema(Schema):
    organisation_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    sha256 = fields.String(
        required=True,
        validate=validate.Regexp(SHA256_HEX, error="must be the 64 hexadecimal characters of the text's SHA-256"),
        metadata={"description": "SHA-256 (hex) of the UTF-8 text served at /charter.txt"},
    )


class CharterVersionOutSchema(Schema):
    version = fields.String()
    title = fields.String()
    body = fields.String()
    sha256 = fields.String()
    published_at = fields.String(metadata={"description": "UTC, ISO 8601"})
    current = fields.Boolean()
    url = fields.String(metadata={"description": "where the text is served as text/plain"})
    version_url = fields.String()


class OrganisationRefSchema(Schema):
    id = fields.Integer()
    name = fields.String()


class PublishedCharterSchema(CharterVersionOutSchema):
    must_resign = fields.List(fields.Nested(OrganisationRefSchema))


class SignatureOutSchema(Schema):
    organisation_id = fields.Integer()
    organisation_name = fields.String()
    version = fields.String()
    sha256 = fields.String()
    signed_at = fields.String()
    signed_by = fields.Dict(allow_none=True)


class MustSignSchema(Schema):
    organisation_id = fields.Integer()
    organisation_name = fields.String()
    contact_email = fields.String(allow_none=True)
    last_signed_version = fields.String(allow_none=True)


class SignaturesOverviewSchema(Schema):
    current = fields.Dict(allow_none=True)
    signatures = fields.List(fields.Nested(SignatureOutSchema))
    must_sign = fields.List(fields.Nested(MustSignSchema))
