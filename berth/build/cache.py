"""The build cache: which image a build step made, keyed by everything that step depends on.

A key is the SHA-256 of the parent image ID, the instruction as run (after substitution), the
build args in effect, the content checksum of what a COPY/ADD copies, and whether the build is
reproducible (the created times differ otherwise). The value is the image the step made; a hit
counts only while that image is still stored, so ``docker image prune`` or ``rmi`` of an
intermediate simply turns the step back into a miss. The table lives in the daemon's database
(its own schema version, ``build``) and so survives a restart.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Mapping

from berth.db import Step, migrate, schema_problem, transaction
from berth.storecheck import Findings

MIGRATIONS: list[Step] = ["""
CREATE TABLE IF NOT EXISTS build_cache (
    key TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS build_cache_image ON build_cache(image_id);
"""]


def step_key(parent: str, instruction: str, build_args: Mapping[str, str], checksum: str = "",
             platform: str = "", reproducible: bool = True) -> str:
    """The cache key of one step. ``build_args``: only those in effect (declared by an ARG)."""
    doc = [parent, instruction, sorted(build_args.items()), checksum, platform, reproducible]
    return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()


class BuildCache:
    def __init__(self, conn: sqlite3.Connection, image_exists: Callable[[str], bool]) -> None:
        self.conn = conn
        self.image_exists = image_exists
        migrate(conn, "build", MIGRATIONS)

    def get(self, key: str) -> str | None:
        """The image a step with this key made, if it is still there (loop thread)."""
        row = self.conn.execute("SELECT image_id FROM build_cache WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        if not self.image_exists(row[0]):
            with transaction(self.conn):
                self.conn.execute("DELETE FROM build_cache WHERE key=?", (key,))
            return None
        return str(row[0])

    def put(self, key: str, image_id: str) -> None:
        with transaction(self.conn):
            self.conn.execute("INSERT OR REPLACE INTO build_cache VALUES (?,?,?)", (key, image_id, time.time()))

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM build_cache").fetchone()[0])


def check(conn: sqlite3.Connection) -> Findings:
    """For ``berth check``: the table's schema version. An entry whose image is gone is no
    problem (the next lookup drops it as a miss). Changes nothing."""
    f = Findings()
    if (p := schema_problem(conn, "build", MIGRATIONS)) is not None:
        f.problem("database", p)
    try:
        f.checked = int(conn.execute("SELECT count(*) FROM build_cache").fetchone()[0])
    except sqlite3.OperationalError:
        f.checked = 0  # a data root no build has opened yet
    return f
