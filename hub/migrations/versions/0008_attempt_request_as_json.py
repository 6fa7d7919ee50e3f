"""attempt records as json, not jsonb, on PostgreSQL

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 14:20:00

An attempt's request record is written once (COPY, one row per event delivered) and read back whole; nothing
filters or indexes inside it. ``jsonb`` parses every record into its binary form on insert; ``json`` only checks
it and keeps the text. SQLite has a single JSON type: nothing changes there. On a large ``attempts`` table the
type change rewrites the table (an exclusive lock for the duration): run it in a quiet moment.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE attempts ALTER COLUMN request TYPE json USING request::json")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE attempts ALTER COLUMN request TYPE jsonb USING request::jsonb")
