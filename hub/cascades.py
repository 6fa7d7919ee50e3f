"""References kept by triggers instead of foreign keys, on the tables written once per event (or per trigger).

Deleting an action deletes its attempts: a trigger on ``actions``, not a foreign key on ``attempts``.

A foreign key from ``attempts.action_id`` made PostgreSQL check every attempt row written: one lookup and row
lock of the action per event delivered, run row by row, ~11-13 µs of the server's CPU an attempt (a third of
writing it; migration 0012). What the key gave besides the check was ``ON DELETE CASCADE``, which these triggers
give instead: one statement per delete on PostgreSQL (the deleted rows as a transition table, joined to the
attempts by ``ix_attempts_action_id``), a row trigger on SQLite. Actions are deleted only with their store (its
foreign key's cascade fires these triggers too).

Attempts are written by one function (``hub.delivery.insert_attempts``), for the actions the job has just read
under its lease. The one thing the key also stopped: an attempt written for an action deleted while its request
was out (the store deleted mid-delivery) outlives it, reachable by nothing (every reader comes to attempts through
their action). ``hub db prune-orphan-attempts`` removes such rows.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from hub import dbtriggers

TRIGGER_NAMES = ("attempts_cascade",)

POSTGRESQL = [
    """
    CREATE FUNCTION attempts_cascade() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM attempts t USING old_rows o WHERE t.action_id = o.id;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER attempts_cascade AFTER DELETE ON actions REFERENCING OLD TABLE AS old_rows
       FOR EACH STATEMENT EXECUTE FUNCTION attempts_cascade()""",
]

SQLITE = [
    """CREATE TRIGGER attempts_cascade AFTER DELETE ON actions BEGIN
        DELETE FROM attempts WHERE action_id = OLD.id;
    END""",
]

ORPHANS = "DELETE FROM attempts WHERE NOT EXISTS (SELECT 1 FROM actions a WHERE a.id = attempts.action_id)"


# Deleting a flow, a step, a trigger, a customer or an integration leaves its actions and clears their reference to
# it, as the foreign keys of ``actions`` did (ON DELETE SET NULL) before migration 0013 dropped them: PostgreSQL
# checked each of them on every action written, row by row (a lookup and a row lock of the referenced row), ~12 µs
# of its CPU a key an action, ~60 µs an action for the five (bulk ingest, 20 batches of 1,000: 195 → 120 µs of
# PostgreSQL a trigger without them). ``actions.store_id`` keeps its foreign key (a store's deletion takes its
# actions). Today none of these rows is deleted but with its store; the triggers keep the meaning for when one is.
SET_NULL = (
    ("flows", "flow_id"),
    ("flow_steps", "step_id"),
    ("triggers", "trigger_id"),
    ("customers", "customer_id"),
    ("integrations", "integration_id"),
)


# Deleting a customer clears ``triggers.customer_id`` likewise (migration 0014): the foreign key checked and locked the
# customer row for every trigger written, ~5 µs of PostgreSQL's CPU a trigger in bulk ingest (20 % of the triggers'
# COPY). Its other use, ON DELETE SET NULL, is this trigger; ``triggers.store_id`` keeps its key.
TRIGGERS_SET_NULL = (("customers", "customer_id"),)


def set_null_name(column: str, child: str = "actions") -> str:
    return f"{child}_{column}_set_null"


def _set_null_postgresql(parent: str, column: str, child: str = "actions") -> list[str]:
    name = set_null_name(column, child)
    return [
        f"""
        CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE {child} SET {column} = NULL WHERE {column} IN (SELECT id FROM old_rows);
            RETURN NULL;
        END $$""",
        f"""CREATE TRIGGER {name} AFTER DELETE ON {parent} REFERENCING OLD TABLE AS old_rows
           FOR EACH STATEMENT EXECUTE FUNCTION {name}()""",
    ]


def _set_null_sqlite(parent: str, column: str, child: str = "actions") -> list[str]:
    return [
        f"""CREATE TRIGGER {set_null_name(column, child)} AFTER DELETE ON {parent} BEGIN
            UPDATE {child} SET {column} = NULL WHERE {column} = OLD.id;
        END"""
    ]


def install(connection: Connection, *, set_null: bool = True) -> None:
    """Create the triggers (dropping old ones), in the migration's transaction: the attempts' cascade and, with
    ``set_null``, the five that clear the references of actions."""
    dbtriggers.install(connection, TRIGGER_NAMES, postgresql=POSTGRESQL, sqlite=SQLITE, table="attempts", backfill=None)
    if not set_null:
        return
    for parent, column in SET_NULL:
        dbtriggers.install(
            connection,
            (set_null_name(column),),
            postgresql=_set_null_postgresql(parent, column),
            sqlite=_set_null_sqlite(parent, column),
            table=parent,
            backfill=None,
            on=parent,
        )


def install_trigger_references(connection: Connection) -> None:
    """Create the triggers that clear ``triggers``' references (TRIGGERS_SET_NULL), dropping old ones (migration
    0014)."""
    for parent, column in TRIGGERS_SET_NULL:
        dbtriggers.install(
            connection,
            (set_null_name(column, "triggers"),),
            postgresql=_set_null_postgresql(parent, column, "triggers"),
            sqlite=_set_null_sqlite(parent, column, "triggers"),
            table=parent,
            backfill=None,
            on=parent,
        )


def uninstall_trigger_references(connection: Connection) -> None:
    for parent, column in TRIGGERS_SET_NULL:
        dbtriggers.drop(connection, (set_null_name(column, "triggers"),), parent)


def uninstall(connection: Connection, *, set_null: bool = True) -> None:
    dbtriggers.drop(connection, TRIGGER_NAMES)
    if set_null:
        for parent, column in SET_NULL:
            dbtriggers.drop(connection, (set_null_name(column),), parent)


def installed(connection: Connection) -> set[str]:
    """The triggers of this module that exist (on ``actions`` and on the tables it points to)."""
    found = dbtriggers.present(connection, TRIGGER_NAMES)
    for parent, column in SET_NULL:
        found |= dbtriggers.present(connection, (set_null_name(column),), parent)
    for parent, column in TRIGGERS_SET_NULL:
        found |= dbtriggers.present(connection, (set_null_name(column, "triggers"),), parent)
    return found


ALL_TRIGGER_NAMES = (
    TRIGGER_NAMES
    + tuple(set_null_name(column) for _, column in SET_NULL)
    + tuple(set_null_name(column, "triggers") for _, column in TRIGGERS_SET_NULL)
)


def prune_orphans(connection: Connection) -> int:
    """Delete the attempts whose action is gone; how many."""
    return int(connection.execute(text(ORPHANS)).rowcount)  # type: ignore[attr-defined]
