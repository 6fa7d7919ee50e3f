"""partial indexes for the outbox's due, lease and queue scans

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 13:30:00

The dispatcher's scans only look at live rows: (state, run_at) and (state, lease_expires_at) indexed every
row for ever, and every transition added an entry to both. Partial indexes hold only pending rows (due),
queued and sending rows (leases), pending and held rows per store (the Queue view) and per integration
(hold, release, disconnect), and actions a bulk operation touched; a delivered action leaves them all.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def partial(predicate: str) -> dict[str, sa.TextClause]:
    return {"postgresql_where": sa.text(predicate), "sqlite_where": sa.text(predicate)}


def upgrade() -> None:
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_index("ix_actions_state_run_at")
        batch_op.drop_index("ix_actions_state_lease")
        batch_op.drop_index("ix_actions_bulk_operation")
        batch_op.drop_index("ix_actions_integration_state")
        batch_op.create_index(
            "ix_actions_integration_state",
            ["integration_id", "state"],
            unique=False,
            **partial("state IN ('pending', 'held')"),
        )
        batch_op.create_index("ix_actions_due", ["run_at"], unique=False, **partial("state = 'pending'"))
        batch_op.create_index(
            "ix_actions_leased", ["lease_expires_at"], unique=False, **partial("state IN ('queued', 'sending')")
        )
        batch_op.create_index(
            "ix_actions_queue", ["store_id", "run_at", "id"], unique=False, **partial("state IN ('pending', 'held')")
        )
        batch_op.create_index(
            "ix_actions_bulk_operation", ["bulk_operation_id"], unique=False, **partial("bulk_operation_id IS NOT NULL")
        )


def downgrade() -> None:
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_index("ix_actions_bulk_operation")
        batch_op.drop_index("ix_actions_queue")
        batch_op.drop_index("ix_actions_leased")
        batch_op.drop_index("ix_actions_due")
        batch_op.drop_index("ix_actions_integration_state")
        batch_op.create_index("ix_actions_integration_state", ["integration_id", "state"], unique=False)
        batch_op.create_index("ix_actions_bulk_operation", ["bulk_operation_id"], unique=False)
        batch_op.create_index("ix_actions_state_lease", ["state", "lease_expires_at"], unique=False)
        batch_op.create_index("ix_actions_state_run_at", ["state", "run_at"], unique=False)
