"""Engines on the station's SQLite file, and the Alembic upgrade that owns its schema.

Durability settings are applied to every DBAPI connection by a connect event:

- ``journal_mode=WAL``: readers (the UI, the sync service) never block the writer.
- ``synchronous=FULL``: in WAL mode this fsyncs the WAL on every commit, so a committed
  inspection survives a power cut, not only a process crash (NORMAL would not).
- ``busy_timeout``: the sync service updates outbox rows from its own process; a writer
  waits for the lock instead of failing.
- ``foreign_keys=ON``: SQLite leaves it off per connection unless asked.

Write transactions start with ``BEGIN IMMEDIATE`` (the pysqlite driver is put in
autocommit mode and SQLAlchemy's ``begin`` event emits our own BEGIN): taking the write
lock up front means a transaction never fails half-way on a read->write lock upgrade.
The writer engine has exactly one connection: one writer per process.
"""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import QueuePool

from station.store.jsonutil import dumps

log = logging.getLogger(__name__)

DB_FILENAME = "station.db"
BUSY_TIMEOUT_MS = 10_000
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _install_pragmas(engine: Engine, *, writer: bool) -> None:
    begin_sql = "BEGIN IMMEDIATE" if writer else "BEGIN"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Autocommit at the driver level: pysqlite's own implicit BEGIN handling would
        # otherwise defer BEGIN and commit DDL on its own; SQLAlchemy's begin event below
        # emits the BEGIN instead (SQLAlchemy's documented pysqlite recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            mode = cur.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch database to WAL (mode {mode})")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA journal_size_limit={64 << 20}")  # trim the WAL after checkpoints
            if not writer:
                cur.execute("PRAGMA query_only=ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin_sql)


def db_url(path: Path) -> str:
    return f"sqlite+pysqlite:///{Path(path).resolve()}"


def make_engine(path: Path, *, writer: bool = True) -> Engine:
    """An engine on the SQLite file at ``path`` with the station's durability pragmas.

    ``writer=True`` gives the process's single write connection (BEGIN IMMEDIATE);
    ``writer=False`` a small pool of read-only connections (deferred BEGIN).
    """
    engine = create_engine(
        db_url(path),
        poolclass=QueuePool,
        pool_size=1 if writer else 2,
        max_overflow=0 if writer else 4,
        pool_timeout=30,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
        json_serializer=dumps,
    )
    _install_pragmas(engine, writer=writer)
    return engine


def alembic_config(connection: Connection | None = None, url: str | None = None):
    """An Alembic Config for the migrations inside this package (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the schema to ``revision`` in one write transaction.

    Run under ``BEGIN IMMEDIATE``: a second process opening the same database waits for
    the first one's migration instead of racing it, and a crash mid-migration rolls back.
    """
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head
