"""Engine and sessions. The same code runs on SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import select
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    String,
    any_,
    cast,
    create_engine,
    event,
    exc,
    literal,
    literal_column,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import NullType

# A pooled PostgreSQL connection older than this is replaced rather than reused: it bounds how long one can
# sit half-open behind a network device that dropped it silently (a restarted server is noticed at once, below).
POOL_RECYCLE_SECONDS = 1800


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_recycle", POOL_RECYCLE_SECONDS)
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        event.listen(engine, "checkout", _drop_if_closed_by_server)
    return engine


def _drop_if_closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Checkout without a round trip: a pooled connection is idle, so the server has nothing to say on it, and
    anything waiting to be read (the FATAL a terminated backend or a server shutting down sends, then the end of
    the stream) means the server closed it. Raising DisconnectionError makes the pool throw this connection away
    and hand out a fresh one, so a restarted database costs no failed request.

    This replaces ``pool_pre_ping``, which sent a query on every checkout: one of the handful of round trips a
    trigger costs. A connection that breaks while in use is still detected by SQLAlchemy, which then invalidates
    every pooled connection made before it.
    """
    if dbapi_connection.closed or dbapi_connection.broken:
        raise exc.DisconnectionError("the connection was closed")
    if _readable(dbapi_connection.pgconn.socket):
        raise exc.DisconnectionError("the server closed the connection")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (below) instead of pysqlite's deferred BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: with several processes, a deferred transaction that
        # reads and then writes can fail at once with "database is locked" instead of waiting its turn.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def any_of(column: Any, values: Collection[Any], dialect: str) -> ColumnElement[bool]:
    """``column = ANY(:values)`` on PostgreSQL, ``column IN (...)`` elsewhere.

    One array parameter instead of one parameter per value: the statement's text is the same whatever the
    number of values, so it is compiled, parsed and prepared once, where an IN list of a thousand values is
    rendered and parsed again on every call.
    """
    if dialect == "postgresql":
        element = unbounded(column.type)  # VARCHAR(n)[] would cut a longer value, matching one it begins with
        text = array_text(values)
        if text is not None:  # cast by PostgreSQL from its own text form, where psycopg's dumper cost ~10 µs a value
            return column == any_(cast(literal(text, NullType()), ARRAY(element)))  # type: ignore[no-any-return]
        return column == any_(literal(list(values), ARRAY(element)))  # type: ignore[no-any-return]
    return column.in_(list(values))  # type: ignore[no-any-return]


def unbounded(column_type: Any) -> Any:
    """A column's type to cast a value to, a string's without its length: an explicit cast to ``VARCHAR(n)`` cuts a
    longer value silently, where the column itself refuses it and a comparison keeps it whole."""
    return String() if isinstance(column_type, String) and column_type.length is not None else column_type


def array_text(values: Collection[Any]) -> str | None:
    """PostgreSQL's text form of an array of strings (``{"a","b \\"c\\""}``) or of integers (``{1,2}``), or None for
    any other values. psycopg dumps a list of them element by element in Python; this is one join."""
    if not values:
        return "{}"
    if all(type(value) is str for value in values):
        joined = '","'.join(values)
        if '"' in joined or "\\" in joined:  # only these two are escaped inside double quotes
            joined = '","'.join(value.replace("\\", "\\\\").replace('"', '\\"') for value in values)
        return '{"' + joined + '"}'
    if all(type(value) is int for value in values):
        return "{" + ",".join(map(str, values)) + "}"
    return None


def sql_literal(value: str) -> ColumnElement[Any]:
    """A constant written into the statement's text rather than sent as a parameter.

    psycopg prepares a statement it has run five times, and PostgreSQL may then plan it once for any parameters
    (a generic plan), which can only use a partial index whose predicate the statement's text itself implies:
    ``type = 'review.submitted'`` can use ``ix_triggers_customer_reviews``, ``type = $4`` cannot (migration 0007).
    For our own constants only: the value is quoted here, not escaped by the driver.
    """
    return literal_column("'" + str(value).replace("'", "''") + "'")


# Session.info key: the psycopg connection of a session from Database.statements (see hub.pgraw.driver).
DRIVER = "hub.driver"


class Statements:
    """Work on one connection: ``driver``, its psycopg connection, for statements sent straight to it (``hub.pgraw``),
    and ``session``, a Session on the same connection for everything else, made the first time it is asked for.

    ``Database.statements`` gives one whose connection is in autocommit (PostgreSQL): the usual single trigger is one
    statement on the driver and never asks for the session, whose making and closing cost ~4 % of the instructions
    of such a request. ``Statements.of`` wraps a session that exists already (its connection is then
    taken from it, beginning its transaction, when asked for)."""

    def __init__(self, dialect: str, connection: Connection | None, make_session: Callable[[], Session]) -> None:
        self.dialect = dialect
        self._connection = connection
        self._make_session = make_session
        self._session: Session | None = None

    @classmethod
    def of(cls, session: Session) -> Statements:
        work = cls(session.get_bind().dialect.name, None, lambda: session)
        work._session = session
        return work

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = self.session.connection()
        return self._connection

    @property
    def driver(self) -> Any:
        """The psycopg connection (PostgreSQL only)."""
        return self.connection.connection.driver_connection

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = self._make_session()
        return self._session

    def commit(self) -> None:
        """Commit what the session has in a transaction (SQLite's work always has one; an autocommit connection's
        statements committed on their own)."""
        if self._session is not None and self._session.in_transaction():
            self._session.commit()

    def close(self) -> None:
        """Close the session, if one was made."""
        if self._session is not None:
            self._session.close()


class Database:
    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self._readers: sessionmaker[Session] | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"

    def session(self) -> Session:
        return self.sessionmaker()

    def reader(self) -> Session:
        """A session for work that only reads, such as an API GET.

        On PostgreSQL its statements run outside a transaction (autocommit): no BEGIN before the first query and
        no ROLLBACK at the end, two of the three or four round trips a short read would otherwise pay. What it
        reads is the same, since under READ COMMITTED each statement takes its own snapshot in a transaction too.
        A write through it (a token's last use) commits on its own, at once. Elsewhere, a plain session: SQLite's
        transactions are local calls, not round trips.
        """
        if not self.is_postgresql:
            return self.sessionmaker()
        if self._readers is None:
            engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")  # shares the engine's pool
            self._readers = sessionmaker(engine, expire_on_commit=False)
        return self._readers()

    @contextmanager
    def statements(self) -> Iterator[Statements]:
        """Work whose statements each commit on their own on PostgreSQL (autocommit); elsewhere a plain session's.

        For work that writes in a single statement, atomic by itself (single-trigger ingest on PostgreSQL), which
        then needs neither BEGIN nor COMMIT: two round trips fewer. Work that must write more than once opens a
        transaction of its own on the driver connection (``hub.pgraw.atomic``). The caller still calls
        ``commit()``: the transaction on SQLite, nothing on PostgreSQL. The work has one connection, checked out
        at once, whose psycopg connection (``Statements.driver``) the work's own statements go to, and a session
        bound to it, made only when something asks for one.
        """
        if not self.is_postgresql:
            with self.sessionmaker() as session:
                yield Statements.of(session)
            return
        with self.engine.connect() as connection:
            # Autocommit set on the driver itself, not through execution_options (which sets it, and resets it on
            # return, through the dialect: ~10 µs more a request); put back before the pool has the connection again.
            driver: Any = connection.connection.driver_connection
            driver.autocommit = True

            def bound_session() -> Session:
                session = Session(bind=connection, expire_on_commit=False)
                session.info[DRIVER] = driver
                return session

            work = Statements(self.dialect, connection, bound_session)
            try:
                yield work
            finally:
                try:
                    work.close()
                finally:
                    if not (driver.closed or driver.broken):
                        driver.autocommit = False

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits at the end of the block, or rolls back on an exception."""
        with self.sessionmaker() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def _readable(fd: int) -> bool:
    if hasattr(select, "poll"):  # no limit on descriptor numbers, unlike select()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])
