"""full-text search of events

SQLite: an FTS5 table ``event_search`` (rowid = events.id; tokenizer unicode61 with diacritics removed,
so "debat" finds "débat"), kept by triggers on ``events``.
PostgreSQL: a ``tsvector`` column ``events.search_vector`` (configuration ``simple`` over
``unaccent``), kept by a trigger, with a GIN index.

Neither is part of the ORM model: only node/events/search.py queries them, and
node/migrations/env.py keeps autogenerate from proposing to drop them.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The text an event is found by: what a visitor sees of it on a card and its page.
_SQLITE_COLUMNS = "title, description, tags, place_name, city"


def _spelt_out(sql: str) -> str:
    """unicode61 keeps œ and æ as single letters where unaccent (and a French reader) spells them
    oe and ae: "oeuvre" must find "chef-d'œuvre" on both databases."""
    for letter, spelling in (("œ", "oe"), ("Œ", "OE"), ("æ", "ae"), ("Æ", "AE")):
        sql = f"replace({sql}, '{letter}', '{spelling}')"
    return sql


# Tags are a JSON list stored with \u escapes: index the decoded words, not the JSON text.
_SQLITE_VALUES = ", ".join([
    "{row}.id",
    _spelt_out("{row}.title"),
    _spelt_out("{row}.description"),
    _spelt_out(
        "CASE WHEN json_type({row}.tags) = 'array' "
        "THEN (SELECT group_concat(value, ' ') FROM json_each({row}.tags)) ELSE '' END"
    ),
    _spelt_out("coalesce({row}.place_name, '')"),
    _spelt_out("coalesce({row}.city, '')"),
])
_POSTGRESQL_VECTOR = (
    "to_tsvector('simple', unaccent(concat_ws(' ', {row}title, {row}description, "
    "CASE WHEN json_typeof({row}tags) = 'array' "
    "THEN (SELECT string_agg(value, ' ') FROM json_array_elements_text({row}tags)) END, "
    "{row}place_name, {row}city)))"
)


def _upgrade_sqlite() -> None:
    op.execute(
        f"CREATE VIRTUAL TABLE event_search USING fts5({_SQLITE_COLUMNS}, "
        "tokenize = 'unicode61 remove_diacritics 2')"
    )
    new_values = _SQLITE_VALUES.format(row="new")
    op.execute(
        "CREATE TRIGGER event_search_after_insert AFTER INSERT ON events BEGIN "
        f"INSERT INTO event_search(rowid, {_SQLITE_COLUMNS}) VALUES ({new_values}); END"
    )
    op.execute(
        "CREATE TRIGGER event_search_after_update AFTER UPDATE OF title, description, tags, place_name, city "
        "ON events BEGIN DELETE FROM event_search WHERE rowid = old.id; "
        f"INSERT INTO event_search(rowid, {_SQLITE_COLUMNS}) VALUES ({new_values}); END"
    )
    op.execute(
        "CREATE TRIGGER event_search_after_delete AFTER DELETE ON events BEGIN "
        "DELETE FROM event_search WHERE rowid = old.id; END"
    )
    events_values = _SQLITE_VALUES.format(row="events")
    op.execute(f"INSERT INTO event_search(rowid, {_SQLITE_COLUMNS}) SELECT {events_values} FROM events")


def _upgrade_postgresql() -> None:
    # unaccent ships with PostgreSQL's contrib (in the official images and Debian's postgresql package)
    # and is a trusted extension since PostgreSQL 13: the database's owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
    # unaccent() is only STABLE (it reads a dictionary), so the vector is kept by a trigger rather than
    # a generated column or an expression index.
    op.execute("ALTER TABLE events ADD COLUMN search_vector tsvector")
    op.execute(
        """
        CREATE FUNCTION halles_event_search_vector() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          NEW.search_vector := %s;
          RETURN NEW;
        END $$
        """ % _POSTGRESQL_VECTOR.format(row="NEW.")
    )
    op.execute(
        "CREATE TRIGGER events_search_vector BEFORE INSERT OR UPDATE OF title, description, tags, "
        "place_name, city ON events FOR EACH ROW EXECUTE FUNCTION halles_event_search_vector()"
    )
    op.execute("UPDATE events SET search_vector = " + _POSTGRESQL_VECTOR.format(row=""))
    op.execute("CREATE INDEX ix_events_search_vector ON events USING gin (search_vector)")


def upgrade():
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _upgrade_sqlite()
    elif dialect == "postgresql":
        _upgrade_postgresql()
    else:  # pragma: no cover - config.validate() accepts only these two
        raise RuntimeError(f"full-text search is not implemented for {dialect}")


def downgrade():
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS event_search_after_{trigger}")
        op.execute("DROP TABLE IF EXISTS event_search")
    elif dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS events_search_vector ON events")
        op.execute("DROP FUNCTION IF EXISTS halles_event_search_vector()")
        op.execute("DROP INDEX IF EXISTS ix_events_search_vector")
        op.execute("ALTER TABLE events DROP COLUMN IF EXISTS search_vector")
