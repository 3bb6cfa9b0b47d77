"""``halles worker``: one loop that runs every background task (email, federation deliveries, inbox).

Tasks register here with ``register_task``; each is a function returning how much work it did, so
the loop sleeps only when every task was idle. The worker writes a heartbeat that /healthz reads."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path

from flask import Flask

from node.extensions import db

log = logging.getLogger("halles.worker")

#: name -> callable() -> int (units of work done); called inside an app context.
TASKS: dict[str, Callable[[], int]] = {}
IDLE_SLEEP_SECONDS = 0.5


def register_task(name: str, task: Callable[[], int]) -> None:
    TASKS[name] = task


def _load_tasks() -> None:
    from node.mail.services import send_pending

    register_task("mail", lambda: sum(send_pending()))
    try:
        from node.fedi import worker as fedi_worker  # noqa: F401 - registers its tasks on import
    except ModuleNotFoundError as exc:
        if exc.name != "node.fedi.worker":
            raise


def heartbeat_path(app: Flask) -> Path:
    return Path(app.config["HALLES_INSTANCE"]) / "worker.heartbeat"


def run_once(app: Flask) -> int:
    """Run every task once; returns the total work done."""
    _load_tasks()
    done = 0
    with app.app_context():
        for name, task in list(TASKS.items()):
            try:
                done += task() or 0
            except Exception:  # noqa: BLE001 - one failing task must not stop the others
                log.exception("worker task %s failed", name)
                db.session.rollback()
        heartbeat = heartbeat_path(app)
        heartbeat.parent.mkdir(parents=True, exist_ok=True)
        heartbeat.write_text(str(time.time()))
    return done


def run_forever(app: Flask, *, stop_after: float | None = None) -> None:
    stopping = False

    def _stop(*_args):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    started = time.monotonic()
    while not stopping:
        done = run_once(app)
        if stop_after is not None and time.monotonic() - started > stop_after:
            break
        if not done:
            time.sleep(IDLE_SLEEP_SECONDS)
