"""RFC 9457 ``application/problem+json`` responses for every error under ``/api`` (and JSON routes)."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, json, render_template, request
from marshmallow import ValidationError
from sqlalchemy.exc import OperationalError
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


#: SQLite's SQLITE_FULL result code; PostgreSQL's SQLSTATE disk_full.
SQLITE_FULL = 13
PG_DISK_FULL = "53100"


def is_disk_full(exc: OperationalError) -> bool:
    """The database refused a write for lack of space (SQLite: disk or ``max_page_count``; PostgreSQL:
    disk_full)."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlite_errorcode", None) == SQLITE_FULL or getattr(orig, "sqlstate", None) == PG_DISK_FULL:
        return True
    return "database or disk is full" in str(orig) or "No space left on device" in str(orig)


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
            response = problem(exc.status, exc.title, exc.detail, **exc.extra)
        else:
            response = Response(render_template("error.html", status=exc.status, title=exc.title, detail=exc.detail),
                                status=exc.status, mimetype="text/html")
        # e.g. Retry-After on a 429 (node.common.ratelimit.TooManyRequests)
        response.headers.update(getattr(exc, "headers", None) or {})
        return response

    @app.errorhandler(OperationalError)
    def _database_error(exc: OperationalError):
        if not is_disk_full(exc):
            raise exc
        # The failed transaction is rolled back (the session is removed after the request): what was
        # stored before stays, nothing half-written remains.
        app.logger.error("database full: %s", exc.orig)
        detail = ("the database is full (no space left on the server's disk): nothing was saved. Try again "
                  "later; the node's administrator must free disk space")
        if wants_json():
            return problem(507, "Insufficient storage", detail)
        return render_template("error.html", status=507, title="Insufficient storage", detail=detail), 507

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
