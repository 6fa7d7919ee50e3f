"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hub import cascades, counters, open_actions
from hub.migrate import current
from hub.models import Base
from hub.runtime import Runtime


def test_the_migrated_schema_matches_the_models(rt: Runtime) -> None:
    with rt.db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    assert current(rt.db) == "0015"


def test_the_counter_triggers_are_installed_at_head(rt: Runtime) -> None:
    with rt.db.engine.connect() as connection:
        assert counters.installed(connection) == set(counters.TRIGGER_NAMES)


def test_the_open_actions_triggers_are_installed_at_head(rt: Runtime) -> None:
    with rt.db.engine.connect() as connection:
        assert open_actions.installed(connection) == set(open_actions.TRIGGER_NAMES)


def test_the_attempts_cascade_trigger_is_installed_at_head(rt: Runtime) -> None:
    with rt.db.engine.connect() as connection:
        assert cascades.installed(connection) == set(cascades.ALL_TRIGGER_NAMES)
