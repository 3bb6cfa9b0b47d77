"""Organisations API: the member directory (/api/v1/organisations) with per-field consent."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from node.common.api import BadRequest, created, load
from node.common.auth import api_login_required, current_actor, require_actor
from node.common.pagination import decode_cursor, encode_cursor
from node.common.permissions import directory_scope, require_manager_of, require_staff
from node.extensions import db
from node.organisations import services
from node.organisations.models import Organisation
from node.organisations.schemas import (
    ConsentSchema,
    OrganisationCreateSchema,
    OrganisationListSchema,
    OrganisationOutSchema,
    OrganisationUpdateSchema,
)

api = Blueprint("organisations_api", __name__, url_prefix="/api/v1")

DEFAULT_PAGE = 100
MAX_PAGE = 200


def _render(actor: Any, organisation: Organisation, signed: set[int] | None = None) -> dict[str, Any]:
    data = services.view_for(actor, organisation)
    if directory_scope(actor, organisation.id) == "all":
        from node.charters.services import signed_current_ids

        data["charter_signed"] = organisation.id in (signed if signed is not None else signed_current_ids())
    return data


def _page_args() -> tuple[int, int]:
    raw_limit = request.args.get("limit", str(DEFAULT_PAGE))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_PAGE}")
    after = 0
    cursor = request.args.get("cursor")
    if cursor:
        (after,) = decode_cursor(cursor, 1)
        if not isinstance(after, int):
            raise BadRequest("the cursor is not one this server issued; start again without it")
    return after, int(raw_limit)


@api.get("/organisations")
def list_organisations():
    actor = current_actor()
    after, limit = _page_args()
    include_deleted = request.args.get("include_deleted", "").lower() in ("1", "true", "yes")
    page, more = services.list_organisations(actor, after_id=after, limit=limit, include_deleted=include_deleted)
    from node.charters.services import signed_current_ids

    signed = signed_current_ids()
    return jsonify(
        {
            "items": [_render(actor, org, signed) for org in page],
            "next_cursor": encode_cursor(page[-1].id) if more else None,
        }
    )


@api.post("/organisations")
@api_login_required
def create_organisation():
    actor = require_actor()
    require_staff(actor, "add a member organisation")
    data = load(OrganisationCreateSchema())
    consent = data.pop("consent", None)
    organisation = services.create_organisation(actor, data, consent)
    db.session.commit()
    return created(_render(actor, organisation), location=f"/api/v1/organisations/{organisation.id}")


@api.get("/organisations/<int:organisation_id>")
def get_organisation(organisation_id: int):
    actor = current_actor()
    return jsonify(_render(actor, services.get_visible_organisation(actor, organisation_id)))


@api.patch("/organisations/<int:organisation_id>")
@api_login_required
def update_organisation(organisation_id: int):
    actor = require_actor()
    require_manager_of(actor, organisation_id, "change this organisation")
    organisation = services.get_organisation(organisation_id, include_deleted=True)
    data = load(OrganisationUpdateSchema())
    services.update_organisation(actor, organisation, data)
    db.session.commit()
    return jsonify(_render(actor, organisation))


@api.put("/organisations/<int:organisation_id>/consent")
@api_login_required
def set_consent(organisation_id: int):
    actor = require_actor()
    require_manager_of(actor, organisation_id, "change what this organisation shares")
    organisation = services.get_organisation(organisation_id, include_deleted=True)
    choices = load(ConsentSchema())
    services.set_consent(actor, organisation, choices)
    db.session.commit()
    return jsonify(_render(actor, organisation))


@api.delete("/organisations/<int:organisation_id>")
@api_login_required
def delete_organisation(organisation_id: int):
    actor = require_actor()
    require_staff(actor, "remove a member organisation")
    organisation = services.get_organisation(organisation_id, include_deleted=True)
    services.delete_organisation(actor, organisation)
    db.session.commit()
    return Response(status=204)


_PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
_PROBLEM_TEXT = {
    "400": "bad request (not JSON, bad cursor or limit)",
    "401": "no or bad token",
    "403": "not allowed for this role",
    "404": "no such organisation",
    "409": "conflict (slug taken, organisation removed)",
    "415": "the body is not JSON",
    "422": "invalid fields",
}


def _problems(*codes: str) -> dict:
    return {code: {"description": _PROBLEM_TEXT[code], "content": _PROBLEM_CONTENT} for code in codes}


def _json(schema: str) -> dict:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


_ID = [{"name": "organisation_id", "in": "path", "required": True, "schema": {"type": "integer"}}]
_VISIBILITY = (
    "Fields follow each organisation's consent: anonymous readers see fields consented 'public'; people "
    "with an account on this node also see 'network'; staff and the organisation's managers see everything, "
    "plus resident, desks_held, consent and charter_signed."
)

# Nested schemas first: apispec registers a nested schema itself when it meets it inside another.
OPENAPI_SCHEMAS = {
    "OrganisationConsent": ConsentSchema,
    "Organisation": OrganisationOutSchema,
    "OrganisationList": OrganisationListSchema,
    "OrganisationCreate": OrganisationCreateSchema,
    "OrganisationUpdate": OrganisationUpdateSchema,
}

OPENAPI_PATHS = {
    "/api/v1/organisations": {
        "get": {
            "summary": "The member directory",
            "description": _VISIBILITY,
            "tags": ["organisations"],
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                {"name": "include_deleted", "in": "query", "schema": {"type": "boolean"},
                 "description": "staff only: also list organisations that left"},
            ],
            "responses": {"200": {"description": "a page of organisations", "content": _json("OrganisationList")},
                          **_problems("400")},
        },
        "post": {
            "summary": "Add a member organisation (staff)",
            "tags": ["organisations"],
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": _json("OrganisationCreate")},
            "responses": {"201": {"description": "created", "content": _json("Organisation")},
                          **_problems("400", "401", "403", "409", "415", "422")},
        },
    },
    "/api/v1/organisations/{organisation_id}": {
        "get": {
            "parameters": _ID,
                "summary": "One organisation",
            "description": _VISIBILITY,
            "tags": ["organisations"],
            "responses": {"200": {"description": "the organisation", "content": _json("Organisation")},
                          **_problems("404")},
        },
        "patch": {
            "parameters": _ID,
                    "summary": "Change an organisation (staff, or its managers except resident/desks_held/slug)",
            "tags": ["organisations"],
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": _json("OrganisationUpdate")},
            "responses": {"200": {"description": "changed", "content": _json("Organisation")},
                          **_problems("400", "401", "403", "404", "409", "415", "422")},
        },
        "delete": {
            "parameters": _ID,
                            "summary": "Remove an organisation (staff); its history (bookings, signatures) is kept",
            "tags": ["organisations"],
            "security": [{"bearer": []}],
            "responses": {"204": {"description": "removed"}, **_problems("401", "403", "404")},
        },
    },
    "/api/v1/organisations/{organisation_id}/consent": {
        "put": {
            "parameters": _ID,
                "summary": "Choose who sees each directory field (its managers or staff); unnamed fields keep theirs",
            "tags": ["organisations"],
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": _json("OrganisationConsent")},
            "responses": {"200": {"description": "the organisation with its new consent",
                                  "content": _json("Organisation")},
                          **_problems("400", "401", "403", "404", "409", "415", "422")},
        },
    },
}
