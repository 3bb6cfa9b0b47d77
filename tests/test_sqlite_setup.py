"""Processes opening a new SQLite file at once (the gunicorn workers and ``halles worker`` making the
rate-limit file on their first request) all get it in WAL mode: none is told the database is locked."""

from __future__ import annotations

import multiprocessing
import sqlite3

from node.common.sqlite_setup import use_wal

PROCESSES = 4
FILES = 30


def _open(path: str, start, answers) -> None:
    start.wait()
    try:
        connection = sqlite3.connect(path)
        cursor = connection.cursor()
        cursor.execute("PRAGMA busy_timeout=15000")
        use_wal(cursor)
        cursor.execute("CREATE TABLE IF NOT EXISTS buckets (key TEXT PRIMARY KEY, tokens REAL)")
        connection.commit()
        mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        connection.close()
        answers.put(mode)
    except sqlite3.Error as exc:
        answers.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_file_at_once_all_get_it_in_wal_mode(tmp_path):
    # Without use_wal's retries, a few of these races had one process told "database is locked".
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    outcomes = []
    for number in range(FILES):
        start = context.Barrier(PROCESSES)
        processes = [context.Process(target=_open, args=(str(tmp_path / f"new-{number}.db"), start, answers))
                     for _ in range(PROCESSES)]
        for process in processes:
            process.start()
        outcomes.extend(answers.get(timeout=60) for _ in processes)
        for process in processes:
            process.join(timeout=60)
    assert outcomes == ["wal"] * (PROCESSES * FILES)
