"""actions without foreign keys to flows, steps, triggers, customers and integrations; triggers clear them

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 04:30:00

PostgreSQL checked each foreign key of ``actions`` on every action written, row by row: a lookup and a row lock of
the referenced row, ~12 µs of its CPU a key an action. Bulk ingest (20 batches of 1,000 triggers, in process)
spent 195 µs of PostgreSQL a trigger with the six keys of ``actions``, ~120 without five of them and ~110 without
any key on ``actions``, ``triggers`` or ``customers``. The five that only cleared a reference when the row it
pointed to was deleted (ON DELETE SET NULL) become triggers on those tables (hub.cascades); ``store_id`` keeps its
key, which takes a deleted store's actions with it.

SQLite copies ``actions`` to drop the keys (a batch migration), which drops the triggers on it: the counters', the
open actions' and the attempts' cascade are installed again, without a backfill (nothing else writes while the
migration holds the database).
"""

from collections.abc import Sequence

from alembic import op

from hub import cascades, counters, open_actions

# revision identifiers, used by Alembic.
revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _name(parent: str, column: str) -> str:
    return f"fk_actions_{column}_{parent}"


def _reinstall_action_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        counters.install(op.get_bind(), backfill=False)
        open_actions.install(op.get_bind(), backfill=False)
        cascades.install(op.get_bind(), set_null=False)


def upgrade() -> None:
    with op.batch_alter_table("actions", schema=None) as batch_op:
        for parent, column in cascades.SET_NULL:
            batch_op.drop_constraint(_name(parent, column), type_="foreignkey")
    _reinstall_action_triggers()
    cascades.install(op.get_bind())


def downgrade() -> None:
    for parent, column in cascades.SET_NULL:
        op.execute(f"UPDATE actions SET {column} = NULL WHERE {column} NOT IN (SELECT id FROM {parent})")
    cascades.uninstall(op.get_bind())
    with op.batch_alter_table("actions", schema=None) as batch_op:
        for parent, column in cascades.SET_NULL:
            batch_op.create_foreign_key(_name(parent, column), parent, [column], ["id"], ondelete="SET NULL")
    _reinstall_action_triggers()
