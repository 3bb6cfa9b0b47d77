"""Input and output shapes of the organisations API (marshmallow)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from node.organisations.models import CONSENT_SCOPES, DIRECTORY_FIELDS

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
MAX_TOPICS = 20


class Trimmed(fields.String):
    """A string with surrounding whitespace removed, so "  " counts as empty for length checks."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip()


class OptionalText(Trimmed):
    """A nullable short text: an empty string is stored as null (no phone rather than a blank one)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | None:
        text = super()._deserialize(value, attr, data, **kwargs)
        return text or None

    def _validate(self, value: Any) -> None:
        # "" became None above: length validators must not see it (len(None) was a 500).
        if value is not None:
            super()._validate(value)


class LowerEmail(fields.Email):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, str):
            value = value.strip().lower()
        return super()._deserialize(value, attr, data, **kwargs)


class BlankIsNone:
    """Mixin for optional (nullable) fields: ``""`` or blanks clear the value, as ``null`` does. The
    rule for every optional field of the API: an empty string means "none", it is never kept as the
    old value nor refused as a malformed URL or address."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return super()._deserialize(value, attr, data, **kwargs)  # type: ignore[misc]

    def _validate(self, value: Any) -> None:
        if value is not None:  # format and length validators must not see the cleared value
            super()._validate(value)  # type: ignore[misc]


class OptionalEmail(BlankIsNone, LowerEmail):
    """An optional email address: "" clears it."""


class OptionalUrl(BlankIsNone, fields.Url):
    """An optional http(s) URL: "" clears it."""


def _topic_list(value: list[str]) -> None:
    if len(value) > MAX_TOPICS:
        raise ValidationError(f"at most {MAX_TOPICS} topics")
    for topic in value:
        if not topic.strip():
            raise ValidationError("topics must not be empty strings")


_ConsentFields = Schema.from_dict(
    {
        name: fields.String(validate=validate.OneOf(CONSENT_SCOPES, error="must be one of: public, network, private"))
        for name in DIRECTORY_FIELDS
    },
    name="_ConsentFields",
)


class ConsentSchema(_ConsentFields):
    """``{field: "public" | "network" | "private"}`` for the fields of the directory."""

    @validates_schema
    def _not_empty(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data:
            raise ValidationError(
                f"give at least one field to change, among: {', '.join(DIRECTORY_FIELDS)}", "_schema"
            )


class OrganisationUpdateSchema(Schema):
    name = Trimmed(validate=validate.Length(1, 200, error="must be 1 to 200 characters"))
    slug = fields.String(
        validate=[
            validate.Length(2, 80),
            validate.Regexp(SLUG_PATTERN, error="use lowercase letters, digits and hyphens, e.g. quartier-libre"),
        ]
    )
    # Only JSON true/false: "yes" or 1 for a tariff flag is more likely a mistake than a choice.
    resident = fields.Boolean(truthy={True}, falsy={False})
    desks_held = fields.Integer(strict=True, validate=validate.Range(0, 10_000))
    # Optional fields: "" or null clears them (see BlankIsNone).
    contact_email = OptionalEmail(allow_none=True, validate=validate.Length(max=254),
                                  metadata={"description": '"" or null clears it'})
    contact_phone = OptionalText(allow_none=True, validate=validate.Length(max=40),
                                 metadata={"description": '"" or null clears it'})
    city = OptionalText(allow_none=True, validate=validate.Length(max=120), metadata={
        "description": '"" or null clears it: the organisation is then shown in the node\'s own city (HALLES_CITY), '
                       "where most members work"})
    description = Trimmed(validate=validate.Length(max=10_000), metadata={"description": '"" empties it'})
    website = OptionalUrl(allow_none=True, schemes={"http", "https"}, validate=validate.Length(max=500),
                          metadata={"description": '"" or null clears it'})
    topics = fields.List(Trimmed(validate=validate.Length(1, 60)), validate=_topic_list)


class OrganisationCreateSchema(OrganisationUpdateSchema):
    name = Trimmed(required=True, validate=validate.Length(1, 200, error="must be 1 to 200 characters"))
    consent = fields.Nested(ConsentSchema)


class OrganisationOutSchema(Schema):
    """Documentation of the output: which keys appear depends on the consent and the reader."""

    id = fields.Integer()
    slug = fields.String()
    name = fields.String()
    description = fields.String()
    website = fields.String(allow_none=True)
    topics = fields.List(fields.String())
    contact_email = fields.String(allow_none=True)
    contact_phone = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    resident = fields.Boolean(metadata={"description": "staff and the organisation's managers only"})
    desks_held = fields.Integer(metadata={"description": "staff and the organisation's managers only"})
    consent = fields.Dict(keys=fields.String(), values=fields.String())
    charter_signed = fields.Boolean(metadata={"description": "signed the current charter"})
    created_at = fields.String()
    updated_at = fields.String()
    deleted_at = fields.String(allow_none=True)


class OrganisationListSchema(Schema):
    items = fields.List(fields.Nested(OrganisationOutSchema))
    next_cursor = fields.String(allow_none=True)
