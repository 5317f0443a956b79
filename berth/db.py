"""The daemon's one SQLite database. Each package creates, owns and migrates its own tables."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence


def open_db(path: str) -> sqlite3.Connection:
    # Created 0600 before SQLite opens it: SQLite gives -wal and -shm the database file's mode, and
    # the database holds registry credentials and container environments.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    # isolation_level=None: we open transactions explicitly with ``transaction()``.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class transaction:
    """``with transaction(conn):`` — BEGIN IMMEDIATE … COMMIT, ROLLBACK on error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


# -- schema versions -------------------------------------------------------------------------------
# Each store owns its tables and their history: a list of steps, step i taking its tables from version
# i-1 to i. Step 1 is the store's first schema, written ``CREATE … IF NOT EXISTS`` so that a data root
# from before versioning (every store at its first schema, ``user_version`` 0) takes it as a no-op.
# Stores open at different times and know nothing of each other's steps, so each store's version is a
# row of ``schema_versions``; ``PRAGMA user_version`` says which bookkeeping the file uses.
Step = str | Callable[[sqlite3.Connection], None]
FORMAT = 1  # user_version: 0 = before versioning; 1 = each store's version in schema_versions


class SchemaTooNew(RuntimeError):
    """The data root was written by a newer berth: opening it could only damage it."""


def _statements(script: str) -> list[str]:
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        raise ValueError(f"incomplete SQL statement: {buf.strip()!r}")
    return out


def _bookkeeping(conn: sqlite3.Connection) -> None:
    fmt = conn.execute("PRAGMA user_version").fetchone()[0]
    if fmt > FORMAT:
        raise SchemaTooNew(f"database format {fmt} is newer than this berth knows ({FORMAT})")
    if fmt < FORMAT:
        with transaction(conn):
            conn.execute("CREATE TABLE IF NOT EXISTS schema_versions (store TEXT PRIMARY KEY, "
                         "version INTEGER NOT NULL)")
            conn.execute(f"PRAGMA user_version={FORMAT}")


def schema_version(conn: sqlite3.Connection, store: str) -> int:
    """``store``'s schema version: 0 when never migrated (a new data root, or one from before versioning)."""
    try:
        row = conn.execute("SELECT version FROM schema_versions WHERE store=?", (store,)).fetchone()
    except sqlite3.OperationalError:  # no bookkeeping yet
        return 0
    return row[0] if row else 0


def migrate(conn: sqlite3.Connection, store: str, steps: Sequence[Step]) -> int:
    """Bring ``store``'s tables to version ``len(steps)``, one transaction per step, so a crash leaves
    them at some whole version; returns the version they were at. Refuses a newer version."""
    _bookkeeping(conn)
    was = schema_version(conn, store)
    if was > len(steps):
        raise SchemaTooNew(f"{store} tables are at schema version {was}; this berth knows up to {len(steps)}")
    for version, step in enumerate(steps[was:], start=was + 1):
        with transaction(conn):
            if callable(step):
                step(conn)
            else:
                for stmt in _statements(step):
                    conn.execute(stmt)
            conn.execute("INSERT OR REPLACE INTO schema_versions VALUES (?,?)", (store, version))
    return was


def schema_problem(conn: sqlite3.Connection, store: str, steps: Sequence[Step]) -> str | None:
    """For ``berth check``: why this berth cannot use ``store``'s tables, if it cannot. An older version
    is no problem: berthd migrates it when it starts."""
    version = schema_version(conn, store)
    if version > len(steps):
        return f"{store} tables are at schema version {version}, newer than this berth knows ({len(steps)})"
    return None
