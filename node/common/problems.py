"""RFC 9457 ``application/problem+json`` responses for every error under ``/api`` (and JSON routes)."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, json, render_template, request
from marshmallow import ValidationError
from sqlalchemy.exc import DataError, OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

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
#: PostgreSQL's numeric_value_out_of_range and datetime_field_overflow.
PG_OUT_OF_RANGE = ("22003", "22008")
#: The largest id a database integer holds (SQLite INTEGER, PostgreSQL BIGINT; SERIAL is smaller).
MAX_DATABASE_INTEGER = 2**63 - 1
OUT_OF_RANGE = "a number or date in the request is out of range: ids and amounts must be whole numbers below 2^63"


class _DatabaseInteger(IntegerConverter):
    """``<int:...>`` in routes: an id no database integer can hold is an unknown URL (404), not an
    overflow deep in the driver (500)."""

    def __init__(self, map, *args, **kwargs) -> None:  # noqa: A002 - werkzeug's parameter name
        kwargs.setdefault("max", MAX_DATABASE_INTEGER)
        super().__init__(map, *args, **kwargs)


def is_locked(exc: OperationalError) -> bool:
    """SQLite's "database is locked" (SQLITE_BUSY) once the wait for the write lock ran out."""
    return (getattr(exc.orig, "sqlite_errorcode", 0) & 0xFF) == 5


#: PostgreSQL's SQLSTATEs of a server going away: shut down by an administrator, crashed, starting or
#: stopping (class 08, connection exceptions, is matched by its prefix).
_PG_SERVER_GONE = frozenset({"57P01", "57P02", "57P03"})


def is_unreachable(exc: OperationalError) -> bool:
    """PostgreSQL could not be reached, or dropped the connection (a restart, a network cut): nothing
    was written, and the next try gets a new connection."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlite_errorcode", None) is not None or not hasattr(orig, "sqlstate"):
        return False
    state = orig.sqlstate
    # psycopg's own errors (refused, lost) carry no SQLSTATE: nothing came from a server.
    return state is None or state.startswith("08") or state in _PG_SERVER_GONE


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


def _try_again_soon(detail: str) -> Any:
    """503 with Retry-After: the database could not do it now, and nothing was saved."""
    headers = {"Retry-After": "5"}
    if wants_json():
        response = problem(503, "Service unavailable", detail)
        response.headers.update(headers)
        return response
    return render_template("error.html", status=503, title="Service unavailable", detail=detail), 503, headers


def register(app: Flask) -> None:
    # Before the blueprints add their routes, which bind the converter they name.
    app.url_map.converters["int"] = _DatabaseInteger

    @app.errorhandler(OverflowError)
    @app.errorhandler(DataError)
    def _out_of_range(exc: Exception):
        """A value from the request beyond what the database or Python dates hold (an id of 2^64, a
        year 10000): the request's fault, and its transaction is rolled back."""
        if isinstance(exc, DataError) and getattr(exc.orig, "sqlstate", None) not in PG_OUT_OF_RANGE:
            raise exc
        if wants_json():
            return problem(422, "Invalid input", OUT_OF_RANGE)
        return render_template("error.html", status=422, title="Invalid input", detail=OUT_OF_RANGE), 422

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
        if is_locked(exc):
            # SQLite: another writer held the lock longer than a request waits (15 s). Nothing was
            # written; a peer or a person can simply try again.
            app.logger.warning("database busy: %s", exc.orig)
            return _try_again_soon("the database is busy: nothing was saved. Try again in a few seconds")
        if is_unreachable(exc):
            app.logger.error("database unreachable: %s", exc.orig)
            return _try_again_soon("the database could not be reached: nothing was saved. Try again in a few seconds")
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
