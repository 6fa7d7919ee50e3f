"""Alembic environment: run from code (hub.migrate), never from an alembic.ini on disk."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from hub.models import Base

# An arbitrary constant: every process that upgrades takes this PostgreSQL advisory lock first.
MIGRATION_LOCK_ID = 727_310_001


def run_migrations_online() -> None:
    connection = context.config.attributes["connection"]
    is_pg = connection.dialect.name == "postgresql"
    if is_pg:
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        connection.commit()
    try:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        if is_pg:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()


run_migrations_online()
