"""Deleting an action deletes its attempts: a trigger on ``actions``, not a foreign key on ``attempts``.

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


def install(connection: Connection) -> None:
    """Create the trigger (dropping an old one), in the migration's transaction."""
    dbtriggers.install(connection, TRIGGER_NAMES, postgresql=POSTGRESQL, sqlite=SQLITE, table="attempts", backfill=None)


def uninstall(connection: Connection) -> None:
    dbtriggers.drop(connection, TRIGGER_NAMES)


def installed(connection: Connection) -> set[str]:
    """The cascade trigger, if ``actions`` has it."""
    return dbtriggers.present(connection, TRIGGER_NAMES)


def prune_orphans(connection: Connection) -> int:
    """Delete the attempts whose action is gone; how many."""
    return int(connection.execute(text(ORPHANS)).rowcount)  # type: ignore[attr-defined]
