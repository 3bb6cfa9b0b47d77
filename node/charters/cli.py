"""``halles charter publish FILE --version V`` and ``halles charter show``."""

from __future__ import annotations

import re
from pathlib import Path

import click
from flask import Flask

from node.cli import fail
from node.extensions import db
from node.members.cli import guarded


def _default_title(text: str, path: Path, version: str) -> str:
    """The first Markdown heading of the file (rendered), or else the file's name."""
    from node.charters.services import node_variables, render_charter

    for line in text.splitlines():
        match = re.match(r"^#\s+(.+?)\s*#*\s*$", line)
        if match:
            return render_charter(match.group(1), node_variables(version)).strip()[:200]
    return path.stem[:200]


def register_cli(app: Flask) -> None:
    @app.cli.group("charter")
    def charter() -> None:
        """Publish and show the charter member organisations sign."""

    @charter.command("publish")
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--version", "version", required=True, help="Version number of this text, e.g. 1.1")
    @click.option("--title", default=None, help="Title (default: the file's first '# ' heading).")
    @guarded
    def publish(file: Path, version: str, title: str | None) -> None:
        """Publish FILE (a template with {{ place_name }}, {{ city }}... or plain text) as the current
        charter; every member organisation is then asked to sign it."""
        from node.charters import services

        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            fail(f"{file} does not exist")
        except UnicodeDecodeError:
            fail(f"{file} is not UTF-8 text; save it as UTF-8 and try again")
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror}")
        charter_version, must_resign = services.publish_charter(
            None, text, version, title or _default_title(text, file, version)
        )
        db.session.commit()
        click.echo(f"published charter version {charter_version.version}: {charter_version.title}")
        click.echo(f"SHA-256: {charter_version.sha256}")
        click.echo(f"text: {services.charter_url()}")
        if must_resign:
            click.echo(f"{len(must_resign)} organisation(s) must sign this version (an email was queued to each):")
            for organisation in must_resign:
                click.echo(f"  - {organisation.name} (id {organisation.id})")
        else:
            click.echo("no member organisation to ask for a signature yet")

    @charter.command("show")
    @click.option("--no-body", is_flag=True, help="Only the version, title and hash.")
    @guarded
    def show(no_body: bool) -> None:
        """Print the current charter: version, hash, who must still sign, then the text."""
        from node.charters import services

        current = services.current_version()
        if current is None:
            fail("no charter is published yet; publish one with `halles charter publish FILE --version 1.0`")
        click.echo(f"version: {current.version}")
        click.echo(f"title: {current.title}")
        click.echo(f"published: {services.version_dict(current, with_body=False)['published_at']}")
        click.echo(f"SHA-256: {current.sha256}")
        click.echo(f"url: {services.charter_url()}")
        pending = services.organisations_to_sign()
        click.echo(f"not signed yet: {', '.join(o.name for o in pending) if pending else 'none'}")
        if not no_body:
            click.echo("")
            click.echo(current.body, nl=False)
