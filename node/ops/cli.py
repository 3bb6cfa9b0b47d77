"""``halles doctor``, ``halles backup``, ``halles restore``: keeping a node healthy and safe."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext


def register_cli(app: Flask) -> None:
    @app.cli.command("doctor")
    @click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (for monitoring).")
    @with_appcontext
    def doctor_command(as_json: bool) -> None:
        """Check the configuration and the environment, and say what to fix.

        One line per check: OK, WARN (works, look at it), FAIL (broken) or SKIP (could not be
        checked). The exit code is 1 when a check fails."""
        from node.ops import doctor

        results = doctor.run_checks(current_app._get_current_object())
        if as_json:
            click.echo(json.dumps({"ok": not doctor.failed(results), "checks": doctor.as_dicts(results)},
                                  ensure_ascii=False, indent=2))
        else:
            for result in results:
                click.echo(result.line())
            failures = sum(result.status == doctor.FAIL for result in results)
            warnings = sum(result.status == doctor.WARN for result in results)
            if failures:
                click.echo(f"{failures} problem(s) to fix, {warnings} warning(s).")
            elif warnings:
                click.echo(f"no problem; {warnings} warning(s) to look at.")
            else:
                click.echo("everything looks right.")
        if doctor.failed(results):
            sys.exit(1)

    @app.cli.command("backup")
    @click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
                  help="Archive to write (a folder: a dated name is chosen inside). Default: a dated "
                       "halles-backup-*.tar.gz in the current folder.")
    @with_appcontext
    def backup_command(output: Path | None) -> None:
        """Save the node (database, node keys, settings, secret key) in one .tar.gz archive.

        Safe while the node runs. The archive holds the node's private keys: keep it private and
        keep a copy on another machine."""
        from node.cli import fail
        from node.ops.backup import BackupError, create_backup

        try:
            result = create_backup(current_app._get_current_object(), output)
        except BackupError as exc:
            fail(str(exc))
            return
        manifest = result.manifest
        rows = sum(manifest["database"]["tables"].values())
        click.echo(f"backup written to {result.path} ({result.path.stat().st_size // 1024 + 1} KB): "
                   f"{manifest['database']['kind']} database with {rows} rows, node keys "
                   + ", ".join(f"{kind} {info['fingerprint']}" for kind, info in manifest["keys"].items()))
        click.echo("it contains the node's private keys: keep it private, and copy it to another machine")

    @app.cli.command("restore")
    @click.argument("archive", type=click.Path(path_type=Path))
    @click.option("--force", is_flag=True,
                  help="Replace the node already in this instance folder and database (its keys and data are lost).")
    @with_appcontext
    def restore_command(archive: Path, force: bool) -> None:
        """Restore a node from a `halles backup` archive into this instance folder and database.

        Stop the web service and the worker first. The target must be empty unless --force."""
        from node.cli import fail
        from node.ops.backup import BackupError, restore_backup

        try:
            lines = restore_backup(current_app._get_current_object(), archive, force=force)
        except BackupError as exc:
            fail(str(exc))
            return
        for line in lines:
            click.echo(line)
