"""PostgreSQL compresses received activities with LZ4

A received activity (about 2 KB of JSON) makes an ``inbox_items`` row just over the size at which
PostgreSQL compresses its largest values before storing them ("TOAST", 2 KB), by default with its own
pglz. LZ4 (PostgreSQL 14 and later, when the server was built with it, as Debian's and the official
images are) compresses as well and costs less CPU to write and to read again: the inbox insert took
23 us per activity instead of 32, and the worker's read 6 instead of 9, in the ingest benchmark
(docs/performance.md). Values stored before keep their compression; new ones use LZ4.

Nothing changes on SQLite, or on a PostgreSQL server without LZ4.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _server_has_lz4(connection) -> bool:
    # default_toast_compression lists lz4 among its values only on a server built with it (14+).
    return bool(connection.scalar(sa.text(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")))


def upgrade():
    connection = op.get_bind()
    if connection.dialect.name == "postgresql" and _server_has_lz4(connection):
        op.execute("ALTER TABLE inbox_items ALTER COLUMN activity SET COMPRESSION lz4")


def downgrade():
    connection = op.get_bind()
    if connection.dialect.name == "postgresql" and _server_has_lz4(connection):
        op.execute("ALTER TABLE inbox_items ALTER COLUMN activity SET COMPRESSION DEFAULT")
