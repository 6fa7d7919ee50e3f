"""store settings (time zone, quiet hours), per-integration rate overrides, Send now past quiet hours

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 10:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("stores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False))
        batch_op.add_column(sa.Column("quiet_hours_start", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("quiet_hours_end", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("quiet_hours_applies_to", sa.String(length=8), server_default="sms", nullable=False)
        )

    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate_limit_per_second", sa.Float(), nullable=True))

    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ignore_quiet_hours", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_column("ignore_quiet_hours")

    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.drop_column("rate_limit_per_second")

    with op.batch_alter_table("stores", schema=None) as batch_op:
        batch_op.drop_column("quiet_hours_applies_to")
        batch_op.drop_column("quiet_hours_end")
        batch_op.drop_column("quiet_hours_start")
        batch_op.drop_column("timezone")
