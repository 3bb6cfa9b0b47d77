"""Operations endpoints: ``/healthz`` for the proxy, the container healthcheck and monitoring."""

from __future__ import annotations

import time
from pathlib import Path

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from node.extensions import db

web = Blueprint("ops", __name__)

#: The worker writes its heartbeat every loop (about every second when idle).
WORKER_STALE_SECONDS = 120


@web.get("/healthz")
def healthz():
    checks: dict[str, dict] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = {"ok": True}
    except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
        checks["database"] = {"ok": False, "detail": f"database unreachable: {type(exc).__name__}"}
    heartbeat = Path(current_app.config["HALLES_INSTANCE"]) / "worker.heartbeat"
    try:
        age = time.time() - float(heartbeat.read_text())
        checks["worker"] = {"ok": age < WORKER_STALE_SECONDS, "last_seen_seconds": round(age, 1)}
        if age >= WORKER_STALE_SECONDS:
            checks["worker"]["detail"] = "the worker has not run for a while: is `halles worker` running?"
    except (OSError, ValueError):
        checks["worker"] = {"ok": False, "detail": "no worker heartbeat yet: start `halles worker`"}
    healthy = all(check["ok"] for check in checks.values())
    response = jsonify({"status": "ok" if healthy else "degraded", "checks": checks})
    response.status_code = 200 if healthy else 503
    response.headers["Cache-Control"] = "no-store"
    return response
