"""RFC 9457 ``application/problem+json`` responses for every error under ``/api`` (and JSON routes)."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, json, render_template, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from node.common.errors import HallesError

PROBLEM_TYPE_BASE = "https://halles.example/problems/"


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return Response(json.dumps(body), status=status, mimetype="application/problem+json")


def wants_json() -> bool:
    if request.path.startswith(("/api/", "/inbox", "/actor", "/outbox", "/.well-known", "/nodeinfo")):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json", "application/activity+json"])
    return best in ("application/json", "application/activity+json")


def _field_errors_text(messages: Any) -> str:
    if isinstance(messages, dict):
        parts = []
        for field, value in messages.items():
            text = "; ".join(str(v) for v in value) if isinstance(value, list) else _field_errors_text(value)
            parts.append(f"{field}: {text}")
        return ", ".join(parts)
    if isinstance(messages, list):
        return "; ".join(str(m) for m in messages)
    return str(messages)


def register(app: Flask) -> None:
    @app.errorhandler(HallesError)
    def _domain_error(exc: HallesError):
        if wants_json():
            return problem(exc.status, exc.title, exc.detail, **exc.extra)
        return render_template("error.html", status=exc.status, title=exc.title, detail=exc.detail), exc.status

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError):
        detail = "invalid fields: " + _field_errors_text(exc.messages)
        if wants_json():
            return problem(422, "Invalid input", detail, errors=exc.messages)
        return render_template("error.html", status=422, title="Invalid input", detail=detail), 422

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        detail = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            detail = f"the request body is larger than the {limit} bytes this server accepts"
        if wants_json():
            response = problem(status, exc.name, detail)
            valid_methods = getattr(exc, "valid_methods", None)
            if status == 405 and valid_methods:
                response.headers["Allow"] = ", ".join(valid_methods)
            return response
        return render_template("error.html", status=status, title=exc.name, detail=detail), status
