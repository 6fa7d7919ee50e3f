"""store config version

A counter on each store, bumped by the database itself whenever one of its integrations, flows or flow
steps is inserted, updated or deleted. Ingest caches a store's flows and integrations per process and
reads this counter in the query it makes anyway, so any change, from any process or any code path,
is seen by the next trigger.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 13:05:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, how a row of it names its store: an expression over NEW/OLD)
WATCHED = (
    ("integrations", "{row}.store_id"),
    ("flows", "{row}.store_id"),
    ("flow_steps", "(SELECT store_id FROM flows WHERE flows.id = {row}.flow_id)"),
)
BUMP = "UPDATE stores SET config_version = config_version + 1 WHERE id = {store}"


def upgrade() -> None:
    with op.batch_alter_table("stores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("config_version", sa.Integer(), nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "postgresql":
        for table, store in WATCHED:
            new, old = store.format(row="NEW"), store.format(row="OLD")
            op.execute(
                f"""
                CREATE FUNCTION bump_store_config_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF TG_OP <> 'DELETE' THEN {BUMP.format(store=new)}; END IF;
                    IF TG_OP <> 'INSERT' THEN {BUMP.format(store=old)}; END IF;
                    RETURN NULL;
                END $$
                """
            )
            op.execute(
                f"CREATE TRIGGER bump_store_config AFTER INSERT OR UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION bump_store_config_{table}()"
            )
    else:
        for table, store in WATCHED:
            for event, rows in (("INSERT", ("NEW",)), ("UPDATE", ("NEW", "OLD")), ("DELETE", ("OLD",))):
                bumps = "; ".join(BUMP.format(store=store.format(row=row)) for row in rows)
                op.execute(
                    f"CREATE TRIGGER bump_store_config_{table}_{event.lower()} AFTER {event} ON {table} "
                    f"FOR EACH ROW BEGIN {bumps}; END"
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, _ in WATCHED:
            op.execute(f"DROP TRIGGER IF EXISTS bump_store_config ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS bump_store_config_{table}()")
    else:
        for table, _ in WATCHED:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS bump_store_config_{table}_{event}")
    with op.batch_alter_table("stores", schema=None) as batch_op:
        batch_op.drop_column("config_version")
