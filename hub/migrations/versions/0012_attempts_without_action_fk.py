"""attempts without a foreign key to actions; a trigger deletes them with their action

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 04:00:00

PostgreSQL checked ``fk_attempts_action_id_actions`` on every attempt row written, row by row: a lookup and a row
lock of the action, ~11-13 µs of the server's CPU an attempt, measured with COPY of 60,000 attempts followed by the
update of their actions, with and without the key (the order of the two made no difference). Its one other use,
``ON DELETE CASCADE``, is now a trigger on ``actions`` (hub.cascades). SQLite copies the table to drop the key (a
batch migration); the trigger is on ``actions``, which is not copied, so the counters' and open actions' triggers
stay as they are.
"""

from collections.abc import Sequence

from alembic import op

from hub import cascades

# revision identifiers, used by Alembic.
revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_constraint("fk_attempts_action_id_actions", type_="foreignkey")
    cascades.install(op.get_bind(), set_null=False)


def downgrade() -> None:
    cascades.uninstall(op.get_bind(), set_null=False)
    op.execute(cascades.ORPHANS)
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_attempts_action_id_actions", "actions", ["action_id"], ["id"], ondelete="CASCADE"
        )
