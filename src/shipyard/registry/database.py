"""The registry's engine, and why its writers go one at a time.

An alias move reads where the alias points, moves it, and records where it came from; two moves of one
model interleaved would both record the same 'from' and break the history's chain that rollback
follows. So every write transaction is serialised: on SQLite it starts with BEGIN IMMEDIATE, taking the
database's single write lock before it reads anything (SQLAlchemy's documented pysqlite recipe: the
driver's own late, implicit BEGIN is switched off and the engine's "begin" event emits ours, which also
gives reads a real transaction and so one consistent snapshot). On PostgreSQL a writer locks the
model's row (SELECT ... FOR UPDATE, see `RegistryBase._locked_model`), which serialises changes to one
model and leaves the others free.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event

WRITE = "shipyard_write"
"""Execution option marking the engine that write transactions run on."""

BUSY_TIMEOUT_S = 30
"""How long a SQLite writer waits for the write lock before giving up with 'database is locked'."""


def make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # pysqlite emits no BEGIN of its own: _sqlite_begin does
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")

    return engine


def writer(engine: Engine) -> Engine:
    """The same engine and pool, for transactions that write (BEGIN IMMEDIATE on SQLite)."""
    return engine.execution_options(**{WRITE: True})
