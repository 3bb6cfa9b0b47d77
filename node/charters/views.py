"""Charter API (/api/v1/charter...) and the charter text served at /charter.txt."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from node.charters import services
from node.charters.schemas import (
    CharterVersionInSchema,
    CharterVersionOutSchema,
    PublishedCharterSchema,
    SignatureInSchema,
    SignaturesOverviewSchema,
)
from node.common.api import created, load
from node.common.auth import api_login_required, require_actor
from node.common.errors import NotFound
from node.common.permissions import require_admin, require_staff
from node.common.timeutil import iso_utc
from node.extensions import db

api = Blueprint("charters_api", __name__, url_prefix="/api/v1")
web = Blueprint("charters_web", __name__)


def _current_or_404():
    version = services.current_version()
    if version is None:
        raise NotFound("no charter is published yet; an admin publishes one with `halles charter publish FILE`")
    return version


@api.get("/charter")
def current_charter():
    return jsonify(services.version_dict(_current_or_404()))


@api.get("/charter/versions")
def list_versions():
    return jsonify({"items": [services.version_dict(v, with_body=False) for v in services.all_versions()]})


@api.get("/charter/versions/<version>")
def get_version(version: str):
    return jsonify(services.version_dict(services.get_version(version)))


@api.post("/charter/versions")
@api_login_required
def publish_version():
    actor = require_actor()
    require_admin(actor, "publish a charter version")
    data = load(CharterVersionInSchema())
    charter, must_resign = services.publish_charter(actor, data["body"], data["version"], data["title"])
    db.session.commit()
    payload = services.version_dict(charter)
    payload["must_resign"] = [{"id": org.id, "name": org.name} for org in must_resign]
    return created(payload, location=f"/api/v1/charter/versions/{charter.version}")


@api.post("/charter/signatures")
@api_login_required
def sign():
    actor = require_actor()
    data = load(SignatureInSchema())
    signature, is_new = services.sign_current(actor, data["organisation_id"], data["sha256"])
    db.session.commit()
    payload = {
        "organisation_id": signature.organisation_id,
        "version": signature.charter_version.version,
        "sha256": signature.sha256,
        "signed_at": iso_utc(signature.signed_at),
        "signed_by_id": signature.signed_by_id,
    }
    if is_new:
        return created(payload)
    return jsonify(payload)


@api.get("/charter/signatures")
@api_login_required
def list_signatures():
    require_staff(require_actor(), "see who signed the charter")
    return jsonify(services.signatures_overview())


def _text(version) -> Response:
    # Served byte for byte as stored, so hashing the response gives the published SHA-256.
    response = Response(version.body.encode("utf-8"), mimetype="text/plain")
    response.headers["Content-Type"] = "text/plain; charset=utf-8"
    response.headers["X-Charter-Version"] = version.version
    response.headers["X-Charter-SHA256"] = version.sha256
    response.set_etag(version.sha256)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response.make_conditional(request)


@web.get("/charter.txt")
def charter_text():
    return _text(_current_or_404())


@web.get("/charter/<version>.txt")
def charter_version_text(version: str):
    return _text(services.get_version(version))


_PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
_PROBLEM_TEXT = {
    "401": "no or bad token",
    "403": "not allowed for this role",
    "404": "not found",
    "409": "conflict (duplicate version, outdated version)",
    "422": "invalid input",
}


def _problems(*codes: str) -> dict:
    return {code: {"description": _PROBLEM_TEXT[code], "content": _PROBLEM_CONTENT} for code in codes}


def _json(schema: str) -> dict:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


OPENAPI_SCHEMAS = {
    "CharterVersion": CharterVersionOutSchema,
    "CharterVersionInput": CharterVersionInSchema,
    "PublishedCharter": PublishedCharterSchema,
    "CharterSignatureInput": SignatureInSchema,
    "CharterSignaturesOverview": SignaturesOverviewSchema,
}

OPENAPI_PATHS = {
    "/api/v1/charter": {
        "get": {
            "summary": "The current charter (text, version and SHA-256)",
            "tags": ["charter"],
            "responses": {"200": {"description": "current version", "content": _json("CharterVersion")},
                          **_problems("404")},
        }
    },
    "/api/v1/charter/versions": {
        "get": {
            "summary": "Every published version, newest first (without bodies)",
            "tags": ["charter"],
            "responses": {"200": {"description": "versions", "content": {"application/json": {"schema": {
                "type": "object",
                "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/CharterVersion"}}},
            }}}}},
        },
        "post": {
            "summary": "Publish a new version (admin); every active organisation must re-sign",
            "tags": ["charter"],
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": _json("CharterVersionInput")},
            "responses": {"201": {"description": "published", "content": _json("PublishedCharter")},
                          **_problems("401", "403", "409", "422")},
        },
    },
    "/charter.txt": {
        "get": {
            "summary": "The current charter as UTF-8 text; its SHA-256 is the one to sign and attest",
            "tags": ["charter"],
            "responses": {"200": {"description": "the text (ETag and X-Charter-SHA256 carry the hash)",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **_problems("404")},
        }
    },
    "/api/v1/charter/versions/{version}": {
        "get": {
            "summary": "One version with its body",
            "tags": ["charter"],
            "parameters": [{"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "the version", "content": _json("CharterVersion")},
                          **_problems("404")},
        }
    },
    "/api/v1/charter/signatures": {
        "get": {
            "summary": "Who signed which version, and who must (re-)sign the current one (staff)",
            "tags": ["charter"],
            "security": [{"bearer": []}],
            "responses": {"200": {"description": "overview", "content": _json("CharterSignaturesOverview")},
                          **_problems("401", "403")},
        },
        "post": {
            "summary": "Sign the current version for an organisation by sending the SHA-256 of its text",
            "description": "Organisation managers (or staff). Sending the same signature again returns 200.",
            "tags": ["charter"],
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": _json("CharterSignatureInput")},
            "responses": {"201": {"description": "signed"}, "200": {"description": "already signed"},
                          **_problems("401", "403", "404", "409", "422")},
        },
    },
}
