"""`halles demo` and `halles demo-seed`."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext


def register_cli(app: Flask) -> None:
    @app.cli.command("demo")
    @click.option("--base-port", default=5001, show_default=True, help="Nodes listen on N, N+1 and N+2.")
    @click.option("--data-dir", default="demo-data", show_default=True, type=click.Path(file_okay=False),
                  help="Where the three instance folders live (delete it to start afresh).")
    def demo_command(base_port: int, data_dir: str) -> None:
        """Start three federated third-places (Paris, Lyon, Marseille) on 127.0.0.1 with realistic data."""
        from node.demo.runner import run

        if not 1024 <= base_port <= 65533:
            raise click.BadParameter("choose a port between 1024 and 65533", param_hint="--base-port")
        try:
            run(base_port, Path(data_dir).resolve(), echo=click.echo)
        except RuntimeError as exc:
            from node.cli import fail

            fail(f"the demo could not start: {exc}")

    @app.cli.command("demo-seed")
    @click.argument("key", type=click.Choice(["paris", "lyon", "marseille"]))
    @click.option("--password", required=True, help="Password of the demo accounts.")
    @with_appcontext
    def demo_seed_command(key: str, password: str) -> None:
        """Fill this node with the demo data of KEY (used by `halles demo`)."""
        from node.cli import validated
        from node.demo.seed import seed

        validated()
        for line in seed(current_app._get_current_object(), key, password):
            click.echo(line)
