"""Database engine and sessions; Alembic migrations are applied on start."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import ORMExecuteState
from sqlmodel import Session

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_LOCK = 0x7472_6F75_7700  # "trouw" in hex: the advisory lock migrations take on PostgreSQL


class DatabaseError(Exception):
    """The database cannot be reached or migrated; the message says what to do."""


class ReadOnlyWriteError(RuntimeError):
    """A write in a read_scope: its rollback would drop it without a word, so it is refused."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, open transactions (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while the worker writes; the timeout waits out short write locks.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# An execution option on the engine of `read_scope`: its transactions only read.
READ_ONLY = "trouw_read_only"


# How long a writer waits in its process's queue before it goes to SQLite's own wait anyway
# (a queue place not given back must not stop the process's writers for good).
QUEUE_TIMEOUT = 30.0


class NestedWriteError(RuntimeError):
    """A thread opened a write transaction while it held one on the same SQLite file: it would
    wait for itself (QUEUE_TIMEOUT, then busy_timeout) and fail with "database is locked"."""


class WriterQueue:
    """One SQLite file's place to write in this process, and the thread holding it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holder: int | None = None

    def locked(self) -> bool:
        return self.lock.locked()


_queues: dict[str, WriterQueue] = {}
_queues_lock = threading.Lock()


class QueuedConnection(sqlite3.Connection):
    """A SQLite connection whose write transactions queue in the process first.

    SQLite's busy handler polls for the write lock in growing sleeps (1, 2, 5, 10 ... 100 ms),
    so threads of one process waiting for each other were woken up to 100 ms late (the API's
    redemptions: write-lock wait p99 93 ms with the lock held for 2-8 ms). Here the process's
    writers wait on one lock per database file, woken the moment the writer before them has
    committed; only waits for other processes still go through the busy handler.
    """

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        name = str(database)
        if not name or ":memory:" in name or "mode=memory" in name:
            self.writer_queue = WriterQueue()  # a database of this connection alone
        else:
            with _queues_lock:
                self.writer_queue = _queues.setdefault(name, WriterQueue())
        self.queued = False

    def queue_for_write(self) -> None:
        queue, me = self.writer_queue, threading.get_ident()
        if queue.holder == me:
            raise NestedWriteError(
                "this thread already holds a write transaction on this database and would wait "
                "for itself: end it first, or do the work in its session"
            )
        self.queued = queue.lock.acquire(timeout=QUEUE_TIMEOUT)
        if self.queued:
            queue.holder = me

    def leave_queue(self) -> None:
        if self.queued:
            self.queued = False
            self.writer_queue.holder = None
            self.writer_queue.lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.leave_queue()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.leave_queue()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.leave_queue()


def _sqlite_begin(connection: Any) -> None:
    if connection.get_execution_options().get(READ_ONLY):
        # In WAL mode a read needs no lock: a deferred BEGIN neither waits for a writer nor
        # makes one wait (a read under IMMEDIATE held the one write lock for nothing).
        connection.exec_driver_sql("BEGIN")
        return
    # IMMEDIATE takes the write lock up front: two writers queue (busy_timeout) instead of
    # one failing at once with "database is locked" when it upgrades a read to a write.
    raw = connection.connection.driver_connection
    queued = isinstance(raw, QueuedConnection)
    if queued:
        raw.queue_for_write()
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        if queued:
            raw.leave_queue()
        raise


def make_engine(url: str) -> Engine:
    """A new engine for url; SQLite files get their folder and WAL mode."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30, "factory": QueuedConnection},
            pool_size=10,
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def get_engine(url: str) -> Engine:
    """The shared, migrated engine for url (one per process)."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = make_engine(url)
            migrate(engine)
            _engines[url] = engine
        return engine


def head_revision(versions: Path = MIGRATIONS_DIR / "versions") -> str | None:
    """The newest revision id, read from the migration files without importing Alembic; None
    unless the revisions form one line (Alembic itself then decides)."""
    pattern = re.compile(r"""^(down_revision|revision)\b[^=]*=\s*(?:['"]([^'"]+)['"]|None)""", re.M)
    revisions: set[str] = set()
    parents: set[str] = set()
    files = list(versions.glob("*.py"))
    for path in files:
        text = path.read_text(encoding="utf-8")
        found: dict[str, str | None] = {m[1]: m[2] for m in pattern.finditer(text)}
        if revision := found.get("revision"):
            revisions.add(revision)
        if parent := found.get("down_revision"):
            parents.add(parent)
    if len(revisions) != len(files):
        return None  # a file this reading does not understand: let Alembic read them all
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_head(engine: Engine) -> bool:
    head = head_revision()
    if head is None:
        return False
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table("alembic_version"):
            return False
        stamped = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    return [row[0] for row in stamped] == [head]


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision.

    A schema already at the newest revision is left alone without importing Alembic: its
    import (with Mako and Pygments) is 18 MiB that every worker kept for its whole life
    (docs/performance.md, "Worker memory").
    """
    try:
        if _at_head(engine):
            return
    except sa.exc.OperationalError:
        pass  # unreachable: the upgrade below says so in the words users know
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # The API and every worker migrate at start: on a shared PostgreSQL they take
                # turns (the lock ends with the transaction), so a second process finds the
                # schema up to date instead of racing to create the same tables.
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseError(
            f"cannot reach the database at {engine.url.render_as_string(hide_password=True)}: "
            f"{reason} (check TROUW_DATABASE_URL and that the server runs)"
        ) from None


_schema_image: bytes | None = None


def new_sqlite_database(path: Path) -> Engine:
    """A new SQLite database file at `path`, already at the newest revision: a copy of one
    migrated once per process (the simulator's scratch databases: its scenario check, each
    part, the merged one). Running the migrations costs 0.2-0.5 CPU s and, with a commit per
    revision, seconds of waiting for the disk on a busy machine; copying the file, milliseconds.
    A forked process inherits the copy its parent made."""
    global _schema_image
    with _lock:
        if _schema_image is None:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="trouw-schema-") as folder:
                first = make_engine(f"sqlite:///{Path(folder) / 'schema.db'}")
                migrate(first)
                with first.connect() as connection:
                    raw = connection.connection.dbapi_connection
                    assert isinstance(raw, sqlite3.Connection)
                    # The whole database, what is still in its write-ahead log included.
                    _schema_image = raw.serialize()
                first.dispose()
        image = _schema_image
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as out:  # a new file: never over a database in use
        out.write(image)
    return make_engine(f"sqlite:///{path}")


class _ReadSession(Session):
    """The session of read_scope: a flush or an ORM write statement raises ReadOnlyWriteError."""


_REFUSED = "a write inside read_scope would be dropped at its rollback: use session_scope"


@sa.event.listens_for(_ReadSession, "before_flush")
def _refuse_flush(session: Session, _context: Any, _instances: Any) -> None:
    raise ReadOnlyWriteError(f"{_REFUSED} (pending: {_pending(session)})")


@sa.event.listens_for(_ReadSession, "do_orm_execute")
def _refuse_write_statement(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise ReadOnlyWriteError(f"{_REFUSED} ({type(state.statement).__name__.lower()})")


def _pending(session: Session) -> str:
    counts = {"new": session.new, "changed": session.dirty, "deleted": session.deleted}
    return ", ".join(f"{len(objects)} {what}" for what, objects in counts.items() if objects)


@contextmanager
def read_scope(engine: Engine) -> Iterator[Session]:
    """A session that only reads: on SQLite it takes no write lock, so it never queues behind
    writers in other processes nor holds them up. A write in it raises ReadOnlyWriteError (at
    the flush, the statement, or the end of the scope) instead of vanishing at the rollback.
    Plain SQL text and statements on session.connection() are not inspected."""
    bound = engine.execution_options(**{READ_ONLY: True})
    with _ReadSession(bound, expire_on_commit=False) as session:
        try:
            yield session
            pending = _pending(session)
            if pending:
                raise ReadOnlyWriteError(f"{_REFUSED} (pending: {pending})")
        finally:
            session.rollback()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def dialect_insert(
    bind: Session | sa.Connection, table: sa.Table
) -> postgresql.Insert | sqlite.Insert:
    """An INSERT of the bind's dialect (SQLite or PostgreSQL), for its ON CONFLICT clauses."""
    name = bind.get_bind().dialect.name if isinstance(bind, Session) else bind.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


_NEW: dict[tuple[str, sa.Table, tuple[str, ...], str | None], sa.Insert] = {}


def insert_new(
    bind: Session | sa.Connection,
    table: sa.Table,
    *,
    key: list[str],
    returning: str | None = None,
) -> sa.Insert:
    """An INSERT that skips the rows whose `key` columns are already there (ON CONFLICT DO
    NOTHING on SQLite and PostgreSQL), with the `returning` column of the rows it inserted.

    Run it with the rows as parameters (`session.execute(statement, rows)`): one statement for
    many rows, and a row another writer inserted first is skipped alone, with no savepoint
    around each. Built once per dialect and table: a statement built per call cost more than
    running it (docs/performance.md, "Simulation speed")."""
    name = bind.get_bind().dialect.name if isinstance(bind, Session) else bind.dialect.name
    cache_key = (name, table, tuple(key), returning)
    statement = _NEW.get(cache_key)
    if statement is None:
        statement = dialect_insert(bind, table).on_conflict_do_nothing(index_elements=key)
        if returning is not None:
            statement = statement.returning(table.c[returning])
        _NEW[cache_key] = statement
    return statement
