"""trigger guard indexes

Ingest asks, for every trigger, whether its order was cancelled or refunded and whether its customer
already reviewed something (the guards' lookups). Both scanned the whole triggers table. Two partial
indexes answer them; being partial, they cost nothing on the common triggers (order.fulfilled,
order.delivered).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 13:40:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STOPPERS = "type IN ('order.cancelled', 'order.refunded')"
REVIEWS = "type = 'review.submitted'"


def upgrade() -> None:
    op.create_index(
        "ix_triggers_store_order_stoppers",
        "triggers",
        ["store_id", "order_id"],
        postgresql_where=sa.text(STOPPERS),
        sqlite_where=sa.text(STOPPERS),
    )
    op.create_index(
        "ix_triggers_customer_reviews",
        "triggers",
        ["customer_id"],
        postgresql_where=sa.text(REVIEWS),
        sqlite_where=sa.text(REVIEWS),
    )


def downgrade() -> None:
    op.drop_index("ix_triggers_customer_reviews", table_name="triggers")
    op.drop_index("ix_triggers_store_order_stoppers", table_name="triggers")
