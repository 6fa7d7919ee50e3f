"""triggers.customer_id without a foreign key (a trigger clears it); customers' identity indexes partial

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 10:00:00

Bulk ingest writes a customer and a trigger for most triggers it takes. PostgreSQL checked the foreign key of
``triggers.customer_id`` on every trigger written, row by row (a lookup and a row lock of the customer just written):
~5.5 µs of its CPU a trigger, 30 % of the triggers' COPY. Its one other use, ON DELETE SET NULL, becomes a trigger on
``customers`` (hub.cascades.TRIGGERS_SET_NULL), as migration 0013 did for ``actions``. ``triggers.store_id`` keeps its
key (a store's deletion takes its triggers).

Every lookup of a customer by e-mail, phone or external id names a value, which a NULL never matches, so their three
indexes need no entry for a customer without that identity (most have an e-mail only): each becomes partial
(``... IS NOT NULL``). Rebuilding them locks writers of ``customers`` out while the migration runs.

SQLite copies ``triggers`` to drop the key (a batch migration), which drops the triggers on it: the cascade that clears
``actions.trigger_id`` is installed again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from hub import cascades

# revision identifiers, used by Alembic.
revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IDENTITIES = ("email", "external_id", "phone")
FOREIGN_KEY = "fk_triggers_customer_id_customers"


def _index(column: str) -> str:
    return f"ix_customers_store_{column}"


def _identity_indexes(*, partial: bool) -> None:
    for column in IDENTITIES:
        op.drop_index(_index(column), table_name="customers")
        predicate = sa.text(f"{column} IS NOT NULL") if partial else None
        op.create_index(
            _index(column),
            "customers",
            ["store_id", column],
            unique=False,
            postgresql_where=predicate,
            sqlite_where=predicate,
        )


def upgrade() -> None:
    with op.batch_alter_table("triggers", schema=None) as batch_op:
        batch_op.drop_constraint(FOREIGN_KEY, type_="foreignkey")
    if op.get_bind().dialect.name == "sqlite":
        cascades.install(op.get_bind(), set_null=True)  # the batch copy dropped actions_trigger_id_set_null
    cascades.install_trigger_references(op.get_bind())
    _identity_indexes(partial=True)


def downgrade() -> None:
    _identity_indexes(partial=False)
    op.execute("UPDATE triggers SET customer_id = NULL WHERE customer_id NOT IN (SELECT id FROM customers)")
    cascades.uninstall_trigger_references(op.get_bind())
    with op.batch_alter_table("triggers", schema=None) as batch_op:
        batch_op.create_foreign_key(FOREIGN_KEY, "customers", ["customer_id"], ["id"], ondelete="SET NULL")
    if op.get_bind().dialect.name == "sqlite":
        cascades.install(op.get_bind(), set_null=True)
