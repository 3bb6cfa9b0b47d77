"""Alembic environment for Halles, run through Flask-Migrate (`halles db upgrade`)."""

import logging

from alembic import context
from flask import current_app

logger = logging.getLogger("alembic.env")
config = context.config
target_db = current_app.extensions["migrate"].db


def run_migrations_offline() -> None:
    url = target_db.engine.url.render_as_string(hide_password=False)
    context.configure(url=url, target_metadata=target_db.metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


# Kept by hand-written migrations outside the ORM model (0002: full-text search of events); without
# this, autogenerate would propose to drop them.
_UNMODELLED_TABLES = ("event_search",)
_UNMODELLED_COLUMNS = {("events", "search_vector")}


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    if type_ == "table" and name and name.startswith(_UNMODELLED_TABLES):
        return False
    if type_ == "column" and (obj.table.name, name) in _UNMODELLED_COLUMNS:
        return False
    if type_ == "index" and name == "ix_events_search_vector":
        return False
    return True


def run_migrations_online() -> None:
    def process_revision_directives(context, revision, directives):
        # Never write an empty migration when autogenerate finds nothing.
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", process_revision_directives)
    conf_args.setdefault("include_object", include_object)
    with target_db.engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_db.metadata, **conf_args)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
