"""action counters for stats, actions by store and creation time, leases on bulk operations

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 13:20:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from hub import counters

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "action_counts",
        sa.Column("id", BigId, nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.Integer(), nullable=False),
        sa.Column("app", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("flow_id", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.String(length=16), nullable=False),
        sa.Column("caused_by", sa.String(length=16), nullable=False),
        sa.Column("sent", sa.Boolean(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("settled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name=op.f("fk_action_counts_store_id_stores"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_counts")),
    )
    op.create_index("ix_action_counts_store_hour", "action_counts", ["store_id", "hour"], unique=False)
    op.create_index("ix_action_counts_unsettled", "action_counts", ["settled", "id"], unique=False)
    op.create_index("ix_actions_store_created", "actions", ["store_id", "created_at"], unique=False)
    op.add_column("bulk_operations", sa.Column("lease_token", sa.String(length=32), nullable=True))
    op.add_column("bulk_operations", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("bulk_operations", sa.Column("resume_after", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("bulk_operations", sa.Column("resumes", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_bulk_operations_state", "bulk_operations", ["state"], unique=False)
    counters.install(op.get_bind())


def downgrade() -> None:
    """Downgrade schema."""
    counters.uninstall(op.get_bind())
    op.drop_index("ix_bulk_operations_state", table_name="bulk_operations")
    with op.batch_alter_table("bulk_operations", schema=None) as batch_op:
        batch_op.drop_column("resumes")
        batch_op.drop_column("resume_after")
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("lease_token")
    op.drop_index("ix_actions_store_created", table_name="actions")
    op.drop_index("ix_action_counts_unsettled", table_name="action_counts")
    op.drop_index("ix_action_counts_store_hour", table_name="action_counts")
    op.drop_table("action_counts")
