"""``halles backup`` and ``halles restore``: the whole node in one ``.tar.gz``.

An archive holds ``manifest.json`` (format version, node URL, creation time, database kind, schema
revision, row counts, key fingerprints, SHA-256 of every file), the instance folder (``node.json``,
``secret_key``, ``keys/*.pem`` — the node's identity — and any other file the node keeps there) and
the database: an SQLite copy made with the online backup API (safe while the node runs) or a
PostgreSQL custom-format dump (``pg_dump -Fc``, consistent while the node runs).

Restoring onto a fresh machine gives the same node: same actor keys, same data. Restoring over an
instance that already holds a node is refused unless ``force`` is given, because it replaces that
node's keys and data."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from flask import Flask

from node.instance import KEY_FILES
from node.ops.doctor import database_revisions, known_revisions, migration_heads, public_key_fingerprint, sqlite_path

FORMAT = "halles-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE_FILES = {"sqlite": "database/halles.sqlite3", "postgresql": "database/halles.pgdump"}
#: Instance files never worth keeping: the live database (copied properly instead), the worker's
#: heartbeat, logs, and backups kept in the folder (an archive must not contain the previous ones).
SKIPPED_NAMES = {"worker.heartbeat"}
SKIPPED_SUFFIXES = (".log", ".tmp", ".pid")
SKIPPED_DIRS = {"backups", "__pycache__"}
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
#: Files that must stay private once restored, whatever mode the archive says.
PRIVATE_FILES = {"secret_key", *KEY_FILES.values()}


class BackupError(Exception):
    """A backup or restore cannot be done; the message says why and what to do."""


@dataclass
class BackupResult:
    path: Path
    manifest: dict[str, Any]


# -- helpers --------------------------------------------------------------------------------------


def database_kind(url: str) -> str:
    if url.startswith("sqlite"):
        return "sqlite"
    if url.startswith("postgresql"):
        return "postgresql"
    raise BackupError(f"unsupported database URL {url.split('@')[-1]!r}: use PostgreSQL or SQLite")


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection URL for pg_dump/pg_restore and the environment carrying the password
    (a password on the command line would show in `ps` to every user of the machine)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed: `apt install postgresql-client` (its major version must be at "
                          "least the server's)")
    return found


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    result = subprocess.run(args, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise BackupError(f"{what} failed: {' / '.join(detail[-3:]) or f'exit code {result.returncode}'}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _counts(connection: Any) -> dict[str, int]:
    from sqlalchemy import func, inspect, select, table

    names = inspect(connection).get_table_names()
    return {name: connection.scalar(select(func.count()).select_from(table(name))) for name in sorted(names)}


def table_counts(url: str) -> dict[str, int]:
    """Rows per table (alembic_version included), to check a restore against the backup."""
    from node.ops.doctor import _engine

    engine = _engine(url)
    try:
        with engine.connect() as connection:
            return _counts(connection)
    finally:
        engine.dispose()


def _dump_postgresql(url: str, dump: Path) -> tuple[dict[str, int], list[str]]:
    """pg_dump inside an exported snapshot, so the row counts and revision written to the manifest
    are those of the dump even while the node keeps writing."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import text

    from node.ops.doctor import _engine

    connection_url, env = _libpq(url)
    tool = _tool("pg_dump")
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                snapshot = connection.scalar(text("SELECT pg_export_snapshot()"))
                counts = _counts(connection)
                revisions = sorted(MigrationContext.configure(connection).get_current_heads())
                _run([tool, "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot}",
                      "--file", str(dump), "--dbname", connection_url], env, "pg_dump")
    finally:
        engine.dispose()
    return counts, revisions


def _instance_files(instance: Path, database_file: Path | None) -> list[Path]:
    skipped = set()
    if database_file is not None:
        main = database_file.resolve()
        # The database is archived by SQLite's online copy; the rate-limit counters beside it
        # (node.common.ratelimit) hold nothing worth restoring.
        for database in (main, main.with_name(f"{main.stem}.ratelimits{main.suffix}")):
            skipped |= {database, *(database.with_name(database.name + suffix) for suffix in SQLITE_COMPANIONS)}
    files = []
    for path in sorted(instance.rglob("*")):
        relative = path.relative_to(instance)
        if any(part in SKIPPED_DIRS for part in relative.parts[:-1]) or (path.is_dir() and path.name in SKIPPED_DIRS):
            continue
        if not path.is_file() or path.is_symlink() or path.resolve() in skipped:
            continue
        if path.name in SKIPPED_NAMES or path.name.endswith(SKIPPED_SUFFIXES) or path.name.endswith(".tar.gz"):
            continue
        files.append(path)
    return files


def _default_name(url: str) -> str:
    host = (urlsplit(url).hostname or "node").replace(":", "_")
    return f"halles-backup-{host}-{datetime.now(UTC):%Y%m%d-%H%M%S}.tar.gz"


# -- backup ---------------------------------------------------------------------------------------


def create_backup(app: Flask, output: Path | None = None) -> BackupResult:
    """Write the node (instance files + database) to one archive, readable by its owner only."""
    config = app.config
    instance = Path(config["HALLES_INSTANCE"])
    url = config["SQLALCHEMY_DATABASE_URI"]
    kind = database_kind(url)
    missing = [str(instance / relative) for relative in KEY_FILES.values() if not (instance / relative).is_file()]
    if missing:
        raise BackupError(f"node keys missing ({', '.join(missing)}): a backup without them could not restore this "
                          "node's identity; restore the keys first")
    if output is None:
        output = Path.cwd() / _default_name(config["HALLES_URL"])
    elif output.is_dir():
        output = output / _default_name(config["HALLES_URL"])
    output = output.resolve()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=output.parent, prefix=".halles-write-test-")
        probe.close()
    except OSError as exc:
        raise BackupError(f"cannot write in {output.parent} ({exc.strerror or exc}): choose a folder this user "
                          "can write with --output, e.g. --output /var/backups/halles") from None

    with tempfile.TemporaryDirectory(prefix="halles-backup-") as work:
        dump = Path(work) / Path(DATABASE_FILES[kind]).name
        database_file = sqlite_path(url) if kind == "sqlite" else None
        if kind == "sqlite":
            if database_file is None or not database_file.exists():
                raise BackupError(f"no SQLite database at {database_file}: nothing to back up")
            source = sqlite3.connect(str(database_file))
            target = sqlite3.connect(str(dump))
            try:
                # The online backup API copies a consistent snapshot while the node keeps writing.
                source.backup(target)
            finally:
                target.close()
                source.close()
            # Counts and revision of the copy itself, not of the live database that kept changing.
            counts = table_counts(f"sqlite:///{dump}")
            revisions = sorted(database_revisions(f"sqlite:///{dump}"))
        else:
            counts, revisions = _dump_postgresql(url, dump)

        members: dict[str, Path] = {DATABASE_FILES[kind]: dump}
        for path in _instance_files(instance, database_file):
            members[f"instance/{path.relative_to(instance).as_posix()}"] = path
        keys = {
            key: {"file": f"instance/{relative}",
                  "fingerprint": public_key_fingerprint((instance / relative).read_bytes())}
            for key, relative in KEY_FILES.items()
        }
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "halles_version": _version(),
            "node": {"url": config["HALLES_URL"], "name": config.get("HALLES_NAME", ""),
                     "city": config.get("HALLES_CITY", "")},
            "database": {"kind": kind, "file": DATABASE_FILES[kind], "revision": revisions, "tables": counts},
            "keys": keys,
            "files": {name: _sha256(path) for name, path in sorted(members.items())},
        }
        partial = output.with_name(output.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as archive:
                data = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mode, info.mtime = len(data), 0o600, int(datetime.now(UTC).timestamp())
                archive.addfile(info, io.BytesIO(data))
                for name, path in sorted(members.items()):
                    archive.add(str(path), arcname=name, recursive=False)
            os.replace(partial, output)
        finally:
            partial.unlink(missing_ok=True)
    return BackupResult(output, manifest)


def _version() -> str:
    try:
        return metadata.version("halles")
    except metadata.PackageNotFoundError:
        return "unknown"


# -- restore --------------------------------------------------------------------------------------


def read_manifest(archive: tarfile.TarFile) -> dict[str, Any]:
    try:
        member = archive.getmember(MANIFEST)
        handle = archive.extractfile(member)
        manifest = json.loads(handle.read()) if handle is not None else None
    except (KeyError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError("this file is not a Halles backup (no valid manifest.json)")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BackupError(f"this backup uses format {version}, newer than this Halles understands ({FORMAT_VERSION}): "
                          "install the Halles version that made it")
    return manifest


def _safe_member_name(name: str) -> bool:
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and name == path.as_posix()


def _occupied(instance: Path, url: str, kind: str) -> list[str]:
    """What a restore would overwrite: an existing node's files or a database with tables."""
    found = [str(instance / name) for name in ("node.json", "secret_key", *KEY_FILES.values())
             if (instance / name).exists()]
    if kind == "sqlite":
        path = sqlite_path(url)
        if path is not None and path.exists() and path.stat().st_size > 0 and table_counts(url):
            found.append(f"the database {path}")
    else:
        try:
            tables = table_counts(url)
        except Exception as exc:  # noqa: BLE001 - the message names the database problem
            raise BackupError(f"cannot open the target database ({str(exc).strip().splitlines()[0]}): create it "
                              "first (`createdb`) and check DATABASE_URL") from None
        if tables:
            found.append(f"the database {url.split('@')[-1]} ({len(tables)} tables)")
    return found


def restore_backup(app: Flask, archive_path: Path, *, force: bool = False) -> list[str]:
    """Put the node of ``archive_path`` in this app's instance folder and database. Returns lines
    to print. Refuses to overwrite an existing node unless ``force``."""
    config = app.config
    instance = Path(config["HALLES_INSTANCE"])
    url = config["SQLALCHEMY_DATABASE_URI"]
    kind = database_kind(url)
    if not archive_path.is_file():
        raise BackupError(f"{archive_path} does not exist")
    try:
        archive = tarfile.open(archive_path, mode="r:gz")
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{archive_path} is not a readable .tar.gz archive ({exc})") from None
    lines = []
    with archive, tempfile.TemporaryDirectory(prefix="halles-restore-") as work:
        manifest = read_manifest(archive)
        database = manifest.get("database") or {}
        if database.get("kind") != kind:
            raise BackupError(
                f"this backup holds a {database.get('kind')} database but this node is configured for {kind} "
                f"(DATABASE_URL): restore it into the same kind of database"
                + (" (unset DATABASE_URL for SQLite)" if database.get("kind") == "sqlite" else
                   " (set DATABASE_URL=postgresql://...)")
            )
        unknown = set(database.get("revision") or []) - known_revisions()
        if unknown:
            raise BackupError(f"this backup was made by a newer Halles (schema {', '.join(sorted(unknown))}): install "
                              "that version first")
        occupied = _occupied(instance, url, kind)
        if occupied and not force:
            raise BackupError(
                "refusing to restore over an existing node: found " + ", ".join(occupied)
                + ". Restore into an empty instance folder (HALLES_INSTANCE) and an empty database, or add --force "
                "to replace this node's keys and data with the backup's"
            )

        # Extract and verify every listed file before touching anything.
        files: dict[str, str] = manifest.get("files") or {}
        extracted: dict[str, Path] = {}
        for name, expected in files.items():
            if not _safe_member_name(name):
                raise BackupError(f"refusing unsafe path {name!r} in the archive")
            try:
                member = archive.getmember(name)
            except KeyError:
                raise BackupError(f"the archive lacks {name} listed in its manifest: it is incomplete") from None
            if not member.isfile():
                raise BackupError(f"{name} in the archive is not a regular file")
            handle = archive.extractfile(member)
            target = Path(work) / "files" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                shutil.copyfileobj(handle, out)  # type: ignore[arg-type]
            if _sha256(target) != expected:
                raise BackupError(f"{name} does not match its checksum: the archive is damaged")
            extracted[name] = target
        for key, info in (manifest.get("keys") or {}).items():
            if info.get("file") not in extracted:
                raise BackupError(f"the archive lacks the node's {key} key: it cannot restore the node's identity")

        _release_database(app)
        _restore_database(kind, url, extracted[database["file"]])
        counts = table_counts(url)
        expected_counts = database.get("tables") or {}
        wrong = {table: (n, counts.get(table)) for table, n in expected_counts.items() if counts.get(table) != n}
        if wrong:
            raise BackupError("the restored database differs from the backup: " + ", ".join(
                f"{table} has {got} rows instead of {want}" for table, (want, got) in sorted(wrong.items())))
        lines.append(f"database restored ({kind}, {sum(counts.values())} rows in {len(counts)} tables)")

        instance.mkdir(parents=True, exist_ok=True)
        for name, source in extracted.items():
            if not name.startswith("instance/"):
                continue
            relative = name.removeprefix("instance/")
            target = instance / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            mode = 0o600 if relative in PRIVATE_FILES else (archive.getmember(name).mode & 0o777) or 0o644
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as out, source.open("rb") as data:
                shutil.copyfileobj(data, out)
            os.chmod(target, mode)  # os.open's mode only applies to new files
        (instance / "keys").chmod(0o700)
        app.extensions.pop("halles_identity", None)  # the keys on disk changed
        for key, info in (manifest.get("keys") or {}).items():
            fingerprint = public_key_fingerprint((instance / info["file"].removeprefix("instance/")).read_bytes())
            if fingerprint != info.get("fingerprint"):
                raise BackupError(f"the restored {key} key does not match the manifest's fingerprint")
            lines.append(f"{key} key restored ({fingerprint})")
        lines.append(f"instance files restored in {instance}")

    revisions = set(database.get("revision") or [])
    if revisions != migration_heads():
        from flask_migrate import upgrade

        from node import MIGRATIONS_DIR

        with app.app_context():
            upgrade(directory=MIGRATIONS_DIR)
        lines.append("database upgraded to this version's schema")
    node = manifest.get("node") or {}
    lines.insert(0, f"restored {node.get('name') or 'the node'} ({node.get('url')}) from the backup of "
                    f"{manifest.get('created_at')}")
    if node.get("url") and node.get("url") != config.get("HALLES_URL") and "HALLES_URL" in os.environ:
        lines.append(f"warning: HALLES_URL is {config.get('HALLES_URL')} but the backup's node is {node.get('url')}; "
                     "the node's identity is tied to its URL: use the same one")
    lines.append("next: start the services again (web and worker), then `halles doctor`")
    return lines


def _release_database(app: Flask) -> None:
    """Close the app's pooled connections: the database is about to be replaced under them."""
    from node.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _restore_database(kind: str, url: str, dump: Path) -> None:
    if kind == "sqlite":
        target = sqlite_path(url)
        if target is None:
            raise BackupError("cannot restore into an in-memory SQLite database")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(target.name + ".restoring")
        shutil.copyfile(dump, staging)
        check = sqlite3.connect(str(staging))
        try:
            if check.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                raise BackupError("the SQLite database in the backup is damaged (integrity check failed)")
        finally:
            check.close()
        for suffix in ("-wal", "-shm", "-journal"):
            target.with_name(target.name + suffix).unlink(missing_ok=True)
        # The database holds password hashes and tokens: readable by the service user only.
        staging.chmod(0o600)
        os.replace(staging, target)
        return
    connection, env = _libpq(url)
    # --clean --if-exists drops what the dump recreates; one transaction, so a failure changes nothing.
    _run([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
          "--exit-on-error", "--dbname", connection, str(dump)], env, "pg_restore")
