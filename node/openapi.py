"""The OpenAPI 3 document at /api/v1/openapi.json, built from each domain's declarations.

Each ``node.<domain>.views`` module may define ``OPENAPI_SCHEMAS`` (name -> marshmallow schema class)
and ``OPENAPI_PATHS`` (path -> {method: operation}); operations reference schemas by name with
``{"$ref": "#/components/schemas/<Name>"}``. apispec turns the marshmallow schemas into JSON Schema,
so the document cannot drift from what the API validates."""

from __future__ import annotations

import importlib
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, current_app, jsonify

bp = Blueprint("openapi", __name__)

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
    "required": ["title", "status", "detail"],
}


def build_spec() -> dict[str, Any]:
    from node import DOMAINS

    spec = APISpec(
        title="Halles node API",
        version="1.0.0",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "JSON API of one Halles node. Writes need 'Authorization: Bearer <token>'."},
        servers=[{"url": current_app.config["HALLES_URL"]}],
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Problem", PROBLEM_SCHEMA)
    for domain in DOMAINS:
        try:
            views = importlib.import_module(f"node.{domain}.views")
        except ModuleNotFoundError:
            continue
        for name, schema in getattr(views, "OPENAPI_SCHEMAS", {}).items():
            if name not in spec.components.schemas:
                spec.components.schema(name, schema=schema)
        for path, operations in getattr(views, "OPENAPI_PATHS", {}).items():
            spec.path(path=path, operations=operations)
    return spec.to_dict()


@bp.get("/api/v1/openapi.json")
def openapi_document():
    return jsonify(build_spec())
