"""The ``halles`` command (also ``flask --app node``). User errors print one clear line, no traceback."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from node.common.errors import HallesError
from node.config import ConfigError


def _create_cli_app() -> Flask:
    from node import create_app

    # Validation is left to each command: `halles init` must run before a secret key exists.
    return create_app(validate=False)


def fail(message: str, code: int = 1) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def validated() -> None:
    """Stop with the configuration problems, if any, before a command touches anything."""
    from node.config import validate

    try:
        validate(current_app.config)
    except ConfigError as exc:
        fail(str(exc), 2)


class HallesGroup(FlaskGroup):
    """Turns domain and configuration errors into one readable line instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (HallesError, ConfigError) as exc:
            fail(getattr(exc, "detail", None) or str(exc))


@click.group(cls=HallesGroup, create_app=_create_cli_app, add_version_option=False)
def main() -> None:
    """Halles: run the node of a civic third-place and federate it with the network."""


@main.command("init")
@click.option("--name", required=True, help="Name of the third-place, e.g. 'Les Halles Civiques'.")
@click.option("--city", required=True, help="City, e.g. Paris.")
@click.option("--url", required=True, help="Public address, e.g. https://halles.example.org")
@click.option("--address", default="", help="Street address shown on the node's profile.")
@click.option("--force", is_flag=True, help="Overwrite node.json of an existing instance (keys are kept).")
def init_command(name: str, city: str, url: str, address: str, force: bool) -> None:
    """Create the instance folder (HALLES_INSTANCE, default ./instance): settings, secret key, node keys,
    database at the latest schema, and the network charter."""
    from node.instance import initialise_instance

    folder = Path(os.environ.get("HALLES_INSTANCE", "instance")).resolve()
    try:
        created = initialise_instance(folder, name=name, city=city, url=url, address=address, force=force)
    except (ValueError, FileExistsError) as exc:
        fail(str(exc))
    for line in created:
        click.echo(line)


@main.command("worker")
@click.option("--once", is_flag=True, help="Run every task once and exit (for cron or tests).")
@click.option("--processes", type=click.IntRange(1, 32), default=1, show_default=True,
              help="Worker processes (PostgreSQL only): each applies its share of received activities and "
                   "sends deliveries; use one per CPU core for a burst of incoming activities.")
@with_appcontext
def worker_command(once: bool, processes: int) -> None:
    """Send queued email and federation deliveries, apply received activities."""
    from node import worker
    from node.ops.runtime import settle

    validated()
    app = current_app._get_current_object()
    if processes > 1:
        if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
            fail("several worker processes need PostgreSQL: SQLite lets one process write at a time, so a second "
                 "one would only wait for the first; run one worker, or move the node to PostgreSQL")
        if once:
            fail("--once runs a single pass in this process; leave out --processes")
        click.echo(f"worker started with {processes} processes; Ctrl-C to stop")
        sys.exit(worker.run_processes(processes))
    if once:
        click.echo(f"worker: {worker.run_once(app)} units of work done")
        return
    click.echo("worker started; Ctrl-C to stop")
    settle()
    worker.run_forever(app)


def register(app: Flask) -> None:
    """Commands that need the app; domains add theirs in their own ``cli`` modules."""
    import importlib

    from node import DOMAINS

    for domain in (*DOMAINS, "instance"):
        try:
            module = importlib.import_module(f"node.{domain}.cli" if domain != "instance" else "node.instance")
        except ModuleNotFoundError as exc:
            if exc.name not in (f"node.{domain}.cli", f"node.{domain}"):
                raise
            continue
        hook = getattr(module, "register_cli", None)
        if hook is not None:
            hook(app)


__all__ = ["main", "fail", "validated", "with_appcontext", "json"]
