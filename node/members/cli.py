"""``halles admin create``, ``halles token create``, ``halles users list``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click
from flask import Flask
from sqlalchemy.exc import OperationalError, ProgrammingError

from node.cli import fail, validated
from node.common.errors import HallesError
from node.config import ConfigError
from node.extensions import db


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Check the configuration first, and turn domain and database errors into one line on stderr
    (no traceback) with a non-zero exit, whichever entry point runs the command."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        validated()
        try:
            return func(*args, **kwargs)
        except (HallesError, ConfigError) as exc:
            db.session.rollback()
            fail(getattr(exc, "detail", None) or str(exc))
        except (OperationalError, ProgrammingError) as exc:
            db.session.rollback()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
            fail(f"the database is not usable ({reason}); run `halles init` or `flask --app node db upgrade`, "
                 "and check DATABASE_URL")
        return None

    return wrapper


def register_cli(app: Flask) -> None:
    @app.cli.group("admin")
    def admin() -> None:
        """Manage the node's administrators."""

    @admin.command("create")
    @click.argument("email")
    @click.option("--name", default="", help="Full name shown to members.")
    @click.option(
        "--password",
        default=None,
        help="The password; better left out: it is then asked for, hidden, twice (a value given here stays "
        "in the shell history).",
    )
    @click.option("--no-password", is_flag=True, help="Create without a password and print an API token instead.")
    @guarded
    def admin_create(email: str, name: str, password: str | None, no_password: bool) -> None:
        """Create an administrator account with EMAIL."""
        from node.members import services

        if password is not None and no_password:
            fail("choose either --password or --no-password, not both")
        address = services.normalise_email(email)
        existing = services.find_user_by_email(address)
        if existing is not None:
            fail(f"{address} already has an account (user {existing.id}, {existing.role}); "
                 f"use `halles token create {address}` to get a token for it")
        if not no_password:
            if password is None:
                # Asked before anything is written, so no transaction waits on someone typing.
                password = click.prompt(
                    f"Password for {address} (at least {services.MIN_PASSWORD} characters)",
                    hide_input=True,
                    confirmation_prompt=True,
                )
            services.check_password_rules(password)
        user = services.create_user(None, address, "admin", None, name)
        if no_password:
            token = services.issue_token(user, "halles admin create")
            db.session.commit()
            click.echo(f"created admin {address} (user {user.id}) without a password", err=True)
            click.echo("API token (shown only once, keep it safe):", err=True)
            click.echo(token)
            return
        services.set_password(user, password)
        db.session.commit()
        click.echo(f"created admin {address} (user {user.id}); API token: `halles token create {address}`")

    @app.cli.group("token")
    def token() -> None:
        """Manage API tokens."""

    @token.command("create")
    @click.argument("email")
    @click.option("--label", default="", help="What the token is for, e.g. 'calendar sync'.")
    @guarded
    def token_create(email: str, label: str) -> None:
        """Create an API token for the account EMAIL and print it once."""
        from node.members import services

        user = services.find_user_by_email(email)
        if user is None:
            fail(f"there is no account with {email.strip().lower()}; create one with "
                 f"`halles admin create {email.strip()}` or invite the person")
        secret = services.issue_token(user, label)
        db.session.commit()
        click.echo(f"API token for {user.email} ({user.role}), shown only once; use it as "
                   "'Authorization: Bearer <token>':", err=True)
        click.echo(secret)

    @app.cli.group("users")
    def users() -> None:
        """See the node's accounts."""

    @users.command("list")
    @click.option("--all", "show_all", is_flag=True, help="Include deactivated accounts.")
    @guarded
    def users_list(show_all: bool) -> None:
        """List accounts: id, email, role, organisation, state."""
        from sqlalchemy import select

        from node.members.models import User

        query = select(User).order_by(User.id)
        if not show_all:
            query = query.where(User.active.is_(True))
        rows = list(db.session.scalars(query))
        if not rows:
            click.echo("no accounts yet: create one with `halles admin create EMAIL`")
            return
        header = ("id", "email", "name", "role", "organisation", "state")
        table = [header] + [
            (
                str(u.id),
                u.email,
                u.name or "-",
                u.role,
                u.organisation.name if u.organisation is not None else "-",
                "active" if u.active else "deactivated",
            )
            for u in rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
