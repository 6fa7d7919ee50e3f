"""received_triggers: triggers taken in with ``Prefer: respond-async``, waiting for the dispatcher to process them

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 14:00:00

A trigger sent with ``Prefer: respond-async`` is stored here as it came (one narrow row, two index entries) and
answered at once; the dispatcher folds these rows into triggers and actions in batches (hub.inbox). A new table only:
nothing stored is touched.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "received_triggers",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("trigger_id", BIG_ID, nullable=False),
        sa.Column("dedupe_key", sa.String(length=300), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_received_triggers")),
        sa.UniqueConstraint("store_id", "dedupe_key", name=op.f("uq_received_triggers_store_id")),
    )


def downgrade() -> None:
    op.drop_table("received_triggers")
