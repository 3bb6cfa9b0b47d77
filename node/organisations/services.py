"""Member organisations: the directory with per-field consent, and the office manager's records.

Every change runs the ``ORGANISATION_CHANGE_HOOKS`` before the caller commits, so a listener (the
federation's transactional outbox) writes its rows in the same transaction as the change."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from node.common.errors import Conflict, Forbidden, InvalidInput, NotFound
from node.common.permissions import directory_scope, is_staff, require_manager_of, require_staff
from node.common.timeutil import iso_utc, utcnow
from node.extensions import db
from node.organisations.models import CONSENT_SCOPES, DEFAULT_CONSENT, DIRECTORY_FIELDS, Organisation

#: Called as ``hook(kind, organisation)`` with kind "create" | "update" | "consent" | "delete", after
#: the change is flushed and before the caller commits.
ORGANISATION_CHANGE_HOOKS: list[Callable[[str, Organisation], None]] = []

#: Fields only staff may change: the tariff (resident) and desk allocation are the place's decisions,
#: and the slug may appear in federated identifiers.
STAFF_ONLY_FIELDS = ("resident", "desks_held", "slug")
EDITABLE_FIELDS = ("name", "slug", "resident", "desks_held", "contact_email", "contact_phone", "city",
                   "description", "website", "topics")

#: Which consent scopes each reading scope may see.
VISIBLE_SCOPES = {
    "public": ("public",),
    "network": ("public", "network"),
    "all": CONSENT_SCOPES,
}


def _run_hooks(kind: str, organisation: Organisation) -> None:
    db.session.flush()
    for hook in ORGANISATION_CHANGE_HOOKS:
        hook(kind, organisation)


def consent_of(organisation: Organisation) -> dict[str, str]:
    """The organisation's consent for every directory field (defaults fill fields never chosen)."""
    stored = organisation.consent or {}
    return {field: stored.get(field, DEFAULT_CONSENT.get(field, "private")) for field in DIRECTORY_FIELDS}


def _field_value(organisation: Organisation, field: str) -> Any:
    if field == "city":
        # Most members work in the place itself, so their city is the node's unless they set one.
        return organisation.city or current_app.config.get("HALLES_CITY")
    if field == "topics":
        return list(organisation.topics or [])
    return getattr(organisation, field)


def is_listed(organisation: Organisation, scope: str) -> bool:
    """Whether the organisation appears at all for a reader of ``scope``: an entry whose name is not
    shared is left out, since an anonymous row (or its slug, made from the name) would still reveal it."""
    if scope not in VISIBLE_SCOPES:
        raise ValueError(f"unknown scope {scope!r}: use public, network or all")
    if scope == "all":
        return True
    return organisation.deleted_at is None and consent_of(organisation)["name"] in VISIBLE_SCOPES[scope]


def directory_entry(organisation: Organisation, scope: str) -> dict[str, Any]:
    """The organisation's directory fields that its consent lets a reader of ``scope`` see.

    ``scope`` is "public" (anyone), "network" (people of this node and peers that attested the current
    charter) or "all". ``id`` is always present; ``slug`` only with the name. Check ``is_listed`` before
    publishing an entry."""
    if scope not in VISIBLE_SCOPES:
        raise ValueError(f"unknown scope {scope!r}: use public, network or all")
    allowed = VISIBLE_SCOPES[scope]
    consent = consent_of(organisation)
    entry: dict[str, Any] = {"id": organisation.id}
    if consent["name"] in allowed:
        entry["slug"] = organisation.slug
    for field in DIRECTORY_FIELDS:
        if consent[field] in allowed:
            entry[field] = _field_value(organisation, field)
    return entry


def full_record(organisation: Organisation) -> dict[str, Any]:
    """Everything staff and the organisation's managers see."""
    record = directory_entry(organisation, "all")
    record.update(
        resident=organisation.resident,
        desks_held=organisation.desks_held,
        consent=consent_of(organisation),
        created_at=iso_utc(organisation.created_at),
        updated_at=iso_utc(organisation.updated_at),
        deleted_at=iso_utc(organisation.deleted_at),
    )
    return record


def view_for(actor: Any, organisation: Organisation) -> dict[str, Any]:
    scope = directory_scope(actor, organisation.id)
    return full_record(organisation) if scope == "all" else directory_entry(organisation, scope)


def get_organisation(organisation_id: int, *, include_deleted: bool = False) -> Organisation:
    organisation = db.session.get(Organisation, organisation_id)
    if organisation is None or (organisation.deleted_at is not None and not include_deleted):
        raise NotFound(f"there is no organisation {organisation_id}")
    return organisation


def get_visible_organisation(actor: Any, organisation_id: int) -> Organisation:
    """The organisation if ``actor`` may see it: staff see removed ones too; others only listed ones."""
    organisation = db.session.get(Organisation, organisation_id)
    if organisation is None:
        raise NotFound(f"there is no organisation {organisation_id}")
    if organisation.deleted_at is not None and not is_staff(actor):
        raise NotFound(f"there is no organisation {organisation_id} (it left the place)")
    if not is_listed(organisation, directory_scope(actor, organisation_id)):
        raise NotFound(f"there is no organisation {organisation_id}")
    return organisation


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:70].strip("-") or "organisation"


def _unique_slug(base: str, exclude_id: int | None = None) -> str:
    candidate, n = base, 1
    while True:
        query = select(Organisation.id).where(Organisation.slug == candidate)
        if exclude_id is not None:
            query = query.where(Organisation.id != exclude_id)
        if db.session.scalar(query) is None:
            return candidate
        n += 1
        candidate = f"{base}-{n}"


def _check_slug_free(slug: str, exclude_id: int | None = None) -> None:
    if _unique_slug(slug, exclude_id) != slug:
        raise Conflict(f"the slug {slug!r} is already used by another organisation; choose another one")


def _validate_values(values: dict[str, Any]) -> None:
    unknown = set(values) - set(EDITABLE_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown organisation fields: {', '.join(sorted(unknown))}")
    if "name" in values and not str(values["name"]).strip():
        raise InvalidInput("name: an organisation needs a name")


def create_organisation(actor: Any, values: dict[str, Any], consent: dict[str, str] | None = None) -> Organisation:
    """Staff add a member organisation. ``values`` holds EDITABLE_FIELDS; the slug is made from the name
    when absent."""
    require_staff(actor, "add a member organisation")
    _validate_values(values)
    if "name" not in values:
        raise InvalidInput("name: an organisation needs a name")
    fields_ = dict(values)
    if fields_.get("slug"):
        _check_slug_free(fields_["slug"])
    else:
        fields_["slug"] = _unique_slug(slugify(fields_["name"]))
    chosen = dict(DEFAULT_CONSENT)
    chosen.update(_checked_consent(consent or {}))
    fields_.setdefault("topics", [])
    organisation = Organisation(**fields_, consent=chosen)
    db.session.add(organisation)
    _run_hooks("create", organisation)
    return organisation


def update_organisation(actor: Any, organisation: Organisation, values: dict[str, Any]) -> Organisation:
    """Staff change anything; an organisation's manager changes its public details but not
    STAFF_ONLY_FIELDS."""
    require_manager_of(actor, organisation.id, "change this organisation")
    if organisation.deleted_at is not None:
        raise Conflict(f"organisation {organisation.id} was removed on {iso_utc(organisation.deleted_at)}; "
                       "it can no longer be changed")
    _validate_values(values)
    if actor.role not in ("admin", "office_manager"):
        refused = sorted(set(values) & set(STAFF_ONLY_FIELDS))
        if refused:
            raise Forbidden(f"only the office manager can change: {', '.join(refused)}")
    if values.get("slug") and values["slug"] != organisation.slug:
        _check_slug_free(values["slug"], organisation.id)
    changed = False
    for field, value in values.items():
        if getattr(organisation, field) != value:
            setattr(organisation, field, value)
            changed = True
    if changed:
        organisation.updated_at = utcnow()
        _run_hooks("update", organisation)
    return organisation


def _checked_consent(choices: dict[str, str]) -> dict[str, str]:
    problems = []
    for field, scope in choices.items():
        if field not in DIRECTORY_FIELDS:
            problems.append(f"{field} is not a directory field (use: {', '.join(DIRECTORY_FIELDS)})")
        elif scope not in CONSENT_SCOPES:
            problems.append(f"{field}: {scope!r} is not a scope (use: {', '.join(CONSENT_SCOPES)})")
    if problems:
        raise InvalidInput("; ".join(problems))
    return dict(choices)


def set_consent(actor: Any, organisation: Organisation, choices: dict[str, str]) -> dict[str, str]:
    """Change the consent scope of some directory fields; fields not named keep theirs. Returns the
    full consent map."""
    require_manager_of(actor, organisation.id, "change what this organisation shares")
    if organisation.deleted_at is not None:
        raise Conflict(f"organisation {organisation.id} was removed; its directory entry is no longer published")
    choices = _checked_consent(choices)
    merged = consent_of(organisation)
    merged.update(choices)
    if merged != (organisation.consent or {}):
        # A new dict, so SQLAlchemy sees the JSON column change.
        organisation.consent = merged
        organisation.updated_at = utcnow()
        _run_hooks("consent", organisation)
    return merged


def delete_organisation(actor: Any, organisation: Organisation) -> None:
    """Soft delete: the row stays for bookings and signatures; the directory drops it. Idempotent."""
    require_staff(actor, "remove a member organisation")
    if organisation.deleted_at is not None:
        return
    organisation.deleted_at = utcnow()
    organisation.updated_at = organisation.deleted_at
    _run_hooks("delete", organisation)


def list_organisations(
    actor: Any, *, after_id: int = 0, limit: int = 100, include_deleted: bool = False
) -> tuple[list[Organisation], bool]:
    """Organisations ``actor`` may see, ordered by id, after ``after_id``; returns (page, more)."""
    query = select(Organisation).where(Organisation.id > after_id).order_by(Organisation.id)
    if not (include_deleted and is_staff(actor)):
        query = query.where(Organisation.deleted_at.is_(None))
    page: list[Organisation] = []
    # Consent is filtered in Python (JSON columns query differently on each backend); the members of
    # a third-place number in the tens, so reading them all is cheap.
    for organisation in db.session.scalars(query).all():
        if is_listed(organisation, directory_scope(actor, organisation.id)):
            if len(page) == limit:
                return page, True
            page.append(organisation)
    return page, False


def active_organisations() -> list[Organisation]:
    return list(
        db.session.scalars(select(Organisation).where(Organisation.deleted_at.is_(None)).order_by(Organisation.name))
    )


def count_organisations() -> int:
    return db.session.scalar(select(func.count(Organisation.id))) or 0
