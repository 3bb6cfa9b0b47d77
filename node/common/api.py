"""Helpers for JSON API views: read a JSON object body, load it with a schema, answer JSON."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from marshmallow import Schema

from node.common.errors import BadRequest, UnsupportedMediaType

__all__ = ["BadRequest", "UnsupportedMediaType", "created", "json_body", "load"]


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 400/415 that says what is wrong with it."""
    if not request.is_json:
        raise UnsupportedMediaType("send the body as JSON with 'Content-Type: application/json'")
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # silent= only covers ValueError; thousands of nested brackets overflow
        raise BadRequest("the body is nested too deeply to be read") from None
    if data is None:
        raise BadRequest("the body is not valid JSON")
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def load(schema: Schema, *, partial: bool = False) -> dict[str, Any]:
    """Validate the JSON body with a marshmallow schema (ValidationError becomes a 422 problem)."""
    return schema.load(json_body(), partial=partial)


def created(payload: Any, location: str | None = None) -> Response:
    response = jsonify(payload)
    response.status_code = 201
    if location:
        response.headers["Location"] = location
    return response
