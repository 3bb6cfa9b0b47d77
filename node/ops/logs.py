"""Structured logs: one JSON object per line on stderr when ``HALLES_LOG_FORMAT=json``.

A log collector (journald, Docker, Loki...) can then filter on fields (``level``, ``logger``,
``path``, ``status``) instead of parsing free text. The same formatter serves the app, ``halles
worker`` and gunicorn (through ``GunicornLogger``, named in ``deploy/gunicorn.conf.py``)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

#: Marks the handler this module installs, so that building the app twice does not log twice.
_MARK = "_halles_json"

#: gunicorn access-log atoms -> field names in the JSON line.
_ACCESS_FIELDS = {
    "h": "remote_addr",
    "m": "method",
    "U": "path",
    "q": "query",
    "s": "status",
    "B": "bytes",
    "f": "referer",
    "a": "user_agent",
}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; request details are added when there is a request."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            entry["message"] = "request"
            entry.update(_access_fields(record.args))
        else:
            entry["message"] = record.getMessage()
            entry.update(_request_fields())
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _access_fields(atoms: dict[str, Any]) -> dict[str, Any]:
    """The request fields of a gunicorn access record (its args are the atoms; '-' means unknown)."""
    fields: dict[str, Any] = {}
    for atom, name in _ACCESS_FIELDS.items():
        value = atoms.get(atom)
        if value not in ("-", "", None):
            fields[name] = value
    if "status" in fields:
        try:
            fields["status"] = int(fields["status"])
        except ValueError:
            pass
    try:
        fields["duration_ms"] = round(int(atoms.get("D")) / 1000, 1)  # D is in microseconds
    except (TypeError, ValueError):
        pass
    for header, name in (("{x-forwarded-for}i", "forwarded_for"), ("{x-request-id}i", "request_id")):
        value = atoms.get(header)
        if value not in ("-", "", None):
            fields[name] = value
    return fields


def _request_fields() -> dict[str, Any]:
    try:
        from flask import has_request_context, request
    except ImportError:  # pragma: no cover - flask is a dependency
        return {}
    if not has_request_context():
        return {}
    fields = {"method": request.method, "path": request.path, "remote_addr": request.remote_addr}
    request_id = request.headers.get("X-Request-ID")
    if request_id:
        fields["request_id"] = request_id[:100]
    return fields


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (test runners and daemons
    replace it), never to a stream that was closed since."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201 - logging's own attribute
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def remove_json_logging() -> None:
    """Undo ``configure_json_logging`` (tests)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)


def configure_json_logging(level: int = logging.INFO) -> None:
    """Send every logger's records through one JSON handler on stderr (idempotent)."""
    root = logging.getLogger()
    if not any(getattr(handler, _MARK, False) for handler in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)


try:  # gunicorn is a dependency, but the app must still import where it is missing (tests, tools).
    from gunicorn.glogging import Logger as _GunicornLogger
except ImportError:  # pragma: no cover
    _GunicornLogger = None  # type: ignore[assignment,misc]


if _GunicornLogger is not None:

    class GunicornLogger(_GunicornLogger):
        """gunicorn's logger with the JSON formatter on its error and access handlers."""

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(JsonFormatter())
