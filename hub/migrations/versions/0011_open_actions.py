"""open actions in a table of their own, kept by triggers; actions at fillfactor 50

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 23:00:00

Every delivered action's row was rewritten twice (the claim: pending → sending with a lease; the outcome:
sending → delivered), and neither rewrite could be a HOT update, since state, run_at and lease_expires_at were in
the keys or predicates of four indexes of ``actions`` (due, leased, queue, integration_state): each rewrite added
an entry to every index of the table. Those four move to ``open_actions`` (one narrow row per pending, held,
queued or sending action, kept by triggers on ``actions``: hub.open_actions), so no index of ``actions`` names a
column a transition changes. With room left on each page (fillfactor 50, PostgreSQL only) the claim and the
outcome become HOT updates of the action row. The fillfactor applies to pages written from now on; an existing
table reaches it as rows are rewritten (or at once with VACUUM FULL, which locks the table while it runs).

PostgreSQL: creating the triggers locks writers of ``actions`` out until the migration commits, so the backfill
misses nothing. SQLite: only plain index operations on ``actions`` (no batch copy of the table, which would drop
its triggers, the counters' included).
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from hub import open_actions

# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def partial(predicate: str) -> dict[str, Any]:
    return {"postgresql_where": sa.text(predicate), "sqlite_where": sa.text(predicate)}


def upgrade() -> None:
    op.create_table(
        "open_actions",
        sa.Column("action_id", BigId, autoincrement=False, nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("integration_id", sa.Integer(), nullable=True),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("action_id", name=op.f("pk_open_actions")),
    )
    open_actions.install(op.get_bind())
    op.create_index("ix_open_actions_due", "open_actions", ["run_at"], **partial("state = 'pending'"))
    op.create_index(
        "ix_open_actions_leased", "open_actions", ["lease_expires_at"], **partial("lease_expires_at IS NOT NULL")
    )
    op.create_index(
        "ix_open_actions_queue",
        "open_actions",
        ["store_id", "run_at", "action_id"],
        **partial("state IN ('pending', 'held')"),
    )
    op.create_index(
        "ix_open_actions_integration",
        "open_actions",
        ["integration_id", "state"],
        **partial("state IN ('pending', 'held')"),
    )
    for name in ("ix_actions_due", "ix_actions_leased", "ix_actions_queue", "ix_actions_integration_state"):
        op.drop_index(name, table_name="actions")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE actions SET (fillfactor = 50)")
        op.execute("ANALYZE open_actions")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE actions RESET (fillfactor)")
    op.create_index(
        "ix_actions_integration_state",
        "actions",
        ["integration_id", "state"],
        **partial("state IN ('pending', 'held')"),
    )
    op.create_index(
        "ix_actions_queue", "actions", ["store_id", "run_at", "id"], **partial("state IN ('pending', 'held')")
    )
    op.create_index("ix_actions_leased", "actions", ["lease_expires_at"], **partial("lease_expires_at IS NOT NULL"))
    op.create_index("ix_actions_due", "actions", ["run_at"], **partial("state = 'pending'"))
    open_actions.uninstall(op.get_bind())
    op.drop_index("ix_open_actions_integration", table_name="open_actions")
    op.drop_index("ix_open_actions_queue", table_name="open_actions")
    op.drop_index("ix_open_actions_leased", table_name="open_actions")
    op.drop_index("ix_open_actions_due", table_name="open_actions")
    op.drop_table("open_actions")
