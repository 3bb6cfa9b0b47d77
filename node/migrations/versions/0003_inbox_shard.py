"""inbox items carry the shard of the object they are about

``inbox_items.shard`` (``node.fedi.models.shard_of``): ``halles worker --processes N`` claims the items
whose ``shard % N`` is its own, instead of hashing each pending activity's JSON in the claim query.
Pending items are given theirs here; applied ones keep 0 (no worker reads them again).

Revision ID: 0003
Revises: 0002
"""
import json
import zlib

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def shard_of(activity: dict) -> int:
    """As ``node.fedi.models.shard_of`` was when this revision was written (a migration stays as it ran)."""
    obj = activity.get("object")
    key = obj.get("id") if isinstance(obj, dict) else obj
    if not isinstance(key, str):
        key = activity.get("id")
    return zlib.crc32(str(key).encode()) & 0x7FFFFFFF


def upgrade():
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("shard", sa.Integer(), nullable=False, server_default="0"))
    connection = op.get_bind()
    items = sa.table("inbox_items", sa.column("id", sa.Integer), sa.column("activity", sa.JSON),
                     sa.column("state", sa.String), sa.column("shard", sa.Integer))
    pending = connection.execute(sa.select(items.c.id, items.c.activity).where(items.c.state == "pending")).all()
    updates = [{"item_id": item_id, "new_shard": shard_of(json.loads(activity) if isinstance(activity, str)
                                                           else activity)}
               for item_id, activity in pending]
    if updates:
        connection.execute(items.update().where(items.c.id == sa.bindparam("item_id"))
                           .values(shard=sa.bindparam("new_shard")), updates)


def downgrade():
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.drop_column("shard")
