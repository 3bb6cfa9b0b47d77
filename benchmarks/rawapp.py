"""The listing benchmark's ceiling: a WSGI app with no framework and no database that answers every request
with the bytes (status, headers, body) saved from the real app. gunicorn serves it with the same
settings as the node: ``gunicorn benchmarks.rawapp:app`` with ``HALLES_BENCH_RAW_RESPONSE`` naming the
saved response (a JSON file: ``{"headers": [[name, value], ...], "body_file": path}``)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def _load() -> tuple[list[tuple[str, str]], bytes]:
    saved = json.loads(Path(os.environ["HALLES_BENCH_RAW_RESPONSE"]).read_text(encoding="utf-8"))
    body = Path(saved["body_file"]).read_bytes()
    headers = [(name, value) for name, value in saved["headers"] if name.lower() != "content-length"]
    headers.append(("Content-Length", str(len(body))))
    return headers, body


HEADERS, BODY = _load() if "HALLES_BENCH_RAW_RESPONSE" in os.environ else ([], b"")


def app(environ, start_response):
    start_response("200 OK", list(HEADERS))
    return [BODY]
