"""``halles worker``: one loop that runs every background task (email, federation deliveries, inbox).

Tasks register here with ``register_task``; each is a function returning how much work it did, so
the loop sleeps only when every task was idle. The worker writes a heartbeat that /healthz reads."""

from __future__ import annotations

import logging
import os
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
    """Run every task once (those of ``HALLES_WORKER_TASKS`` when set); returns the total work done."""
    _load_tasks()
    done = 0
    only = app.config.get("HALLES_WORKER_TASKS")
    with app.app_context():
        for name, task in list(TASKS.items()):
            if only is not None and name not in only:
                continue
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


#: Tasks of the extra processes of ``halles worker --processes N``: applying received activities (each
#: process its partition of the inbox) and sending deliveries (claimed row by row, never twice). Mail
#: and catch-up stay with the first process, which runs every task.
PARALLEL_TASKS = ("inbox", "deliveries")


def _child(index: int, count: int, stop_after: float | None) -> None:
    from node import create_app
    from node.ops.runtime import settle

    app = create_app()
    app.config["HALLES_WORKER_PARTITION"] = (index, count)
    if index > 0:
        app.config["HALLES_WORKER_TASKS"] = PARALLEL_TASKS
    settle()
    run_forever(app, stop_after=stop_after)


def run_processes(count: int, *, stop_after: float | None = None) -> int:
    """Run ``count`` worker processes (PostgreSQL) until SIGTERM/SIGINT; returns the worst exit code.

    Each process builds its app from the environment, as ``halles worker`` does, and takes one
    partition of the inbox (``HALLES_WORKER_PARTITION``), so the activities about one object are applied
    by one process, in order. The processes are started with ``spawn``: no database connection or
    thread of this process is inherited."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_child, args=(index, count, stop_after), name=f"halles-worker-{index}")
                for index in range(count)]
    for child in children:
        child.start()

    def _forward(signum, _frame):
        for child in children:
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signum)

    previous = {sig: signal.signal(sig, _forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for child in children:
            child.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return max((child.exitcode or 0) for child in children)
