"""What every benchmark shares: the machine description, node apps on a fresh database (SQLite file or
a throw-away PostgreSQL database), timing helpers, and the result file.

A result is one JSON file ``benchmarks/results/<name>.json`` with at least ``name``, ``value``,
``unit``, ``ceiling``, ``ratio`` (value / ceiling), ``target``, ``machine`` and ``date``. The ceiling is
always measured in the same run, on the same machine, so the ratio means something on any machine."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"
#: PostgreSQL used by the benchmarks: a database is created in it per run and dropped afterwards.
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def machine() -> dict[str, Any]:
    """What the numbers were measured on: they only compare with numbers of the same machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_result(
    name: str,
    *,
    value: float,
    unit: str,
    ceiling: float,
    target: str,
    met: bool,
    results_dir: Path | None = None,
    **details: Any,
) -> dict[str, Any]:
    """Write ``<results_dir>/<name>.json`` and return what was written."""
    result = {
        "name": name,
        "value": round(value, 3),
        "unit": unit,
        "ceiling": round(ceiling, 3),
        "ratio": round(value / ceiling, 3) if ceiling else None,
        "target": target,
        "target_met": met,
        "machine": {**machine(), "load_average": [round(value, 2) for value in os.getloadavg()]},
        "date": today(),
        **details,
    }
    folder = Path(results_dir or RESULTS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return result


def say(message: str) -> None:
    print(message, flush=True)


@dataclass
class Timer:
    started: float = field(default_factory=time.perf_counter)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def best_rate(work: Callable[[], int], *, repeat: int = 3) -> float:
    """Units per second of ``work()`` (which returns how many units it did), best of ``repeat`` runs:
    a ceiling is what the machine can do, so noise is taken out of it, not added to it."""
    best = 0.0
    for _ in range(repeat):
        timer = Timer()
        units = work()
        best = max(best, units / timer.elapsed)
    return best


def process_cpu() -> float:
    """CPU seconds this process has used (user + system)."""
    return time.process_time()


def database_server_cpu(database: str) -> float | None:
    """CPU seconds used so far by the PostgreSQL server of this machine for ``database`` (the backends
    serving its connections, and the background writers that serve every database), read from Linux's
    /proc; None where that cannot be read. On a machine that also hosts its database, the server's
    work shares the cores with the node's: a ratio on both cores is bounded by both."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for folder in Path("/proc").glob("[0-9]*"):
            try:
                text = (folder / "stat").read_text()
                title = (folder / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # a process that ended meanwhile
            if not text[text.find("(") + 1:text.rfind(")")].startswith(("postgres", "postmaster")):
                continue
            # A backend's title: "postgres: 15/main: <user> <database> <client>(<port>) <state>".
            backend = "(" in title.split(": ", 2)[-1]
            if backend and f" {database} " not in f" {title} ":
                continue  # another database's client (a test suite running meanwhile)
            fields = text[text.rfind(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / ticks
    except (OSError, ValueError):
        return None


# --- databases ------------------------------------------------------------------------------------


def postgres_admin_url() -> str | None:
    """The PostgreSQL server to create benchmark databases in, or None when none answers."""
    url = os.environ.get("HALLES_BENCH_POSTGRES_URL") or os.environ.get("TEST_DATABASE_URL") or DEFAULT_POSTGRES_URL
    if url.lower() in ("", "none", "off"):
        return None
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure means "no PostgreSQL for this run"
        return None
    return url


def _sqlalchemy_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


@contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    """A new empty database URL (not migrated yet) for ``backend`` ("sqlite" or "postgres")."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        return
    import psycopg

    admin = postgres_admin_url()
    if admin is None:
        raise RuntimeError("no PostgreSQL server answers (set HALLES_BENCH_POSTGRES_URL)")
    name = f"halles_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _old = admin.rpartition("/")
    try:
        yield _sqlalchemy_url(f"{base}/{name}")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def node_config(workdir: Path, database_url: str, *, name: str, city: str, url: str) -> dict[str, Any]:
    """The settings of a benchmark node (instance folder with fresh keys under ``workdir``)."""
    from node.instance import generate_keys

    instance = workdir / f"instance-{uuid.uuid4().hex[:8]}"
    instance.mkdir(parents=True)
    generate_keys(instance)
    return {
        "SECRET_KEY": "benchmark",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "HALLES_INSTANCE": str(instance),
        "HALLES_URL": url,
        "HALLES_NAME": name,
        "HALLES_CITY": city,
        "HALLES_ALLOW_PRIVATE_ADDRESSES": True,
    }


def make_node(config: dict[str, Any], *, migrate: bool = True):
    """A node app on ``config``; ``migrate`` brings its database to the latest schema (Alembic, as
    ``halles init`` does, so the indexes are exactly the production ones)."""
    import logging

    from node import MIGRATIONS_DIR, create_app

    app = create_app(dict(config))
    if migrate:
        from flask_migrate import upgrade

        with app.app_context():
            upgrade(directory=MIGRATIONS_DIR)
        # Alembic's logging config turns every logger up to INFO; a benchmark prints its own lines.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    return app


def dispose(app) -> None:
    from node.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def available_backends() -> list[str]:
    """SQLite always; PostgreSQL when a server answers (``HALLES_BENCH_POSTGRES_URL=off`` to skip it)."""
    return ["sqlite", "postgres"] if postgres_admin_url() else ["sqlite"]


def fsync_latency(samples: int = 50) -> dict[str, float]:
    """Milliseconds a durable commit waits for this machine's disk (SQLite WAL, synchronous=FULL), the
    floor under any one-commit-per-request path."""
    with workdir("fsync") as folder:
        conn = sqlite3.connect(folder / "fsync.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        started = time.perf_counter()
        for _ in range(samples):
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t (v) VALUES (?)", ("x" * 2000,))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
    return {"sqlite_durable_commit_ms": round(elapsed / samples * 1000, 3)}


@contextmanager
def workdir(prefix: str, *, base: str | None = None) -> Iterator[Path]:
    """A temporary folder; ``base`` (e.g. /dev/shm) puts it on another filesystem."""
    base = base if base and Path(base).is_dir() else os.environ.get("HALLES_BENCH_TMP")
    folder = Path(tempfile.mkdtemp(prefix=f"halles-bench-{prefix}-", dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
