"""Container records: configuration and state, one SQLite row each."""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field, fields
from typing import Any

from berth.db import Step, migrate, schema_problem, transaction
from berth.errors import NotFound
from berth.storecheck import ORPHAN, TEMP, Findings, Leftover, column, is_temp, ls, trash_contents

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL
);
"""
MIGRATIONS: list[Step] = [SCHEMA]


class ContainerNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"No such container: {name}")


@dataclass
class State:
    Status: str = "created"  # created, running, paused, restarting, removing, exited, dead
    Pid: int = 0
    ExitCode: int = 0
    Error: str = ""
    StartedAt: str = "0001-01-01T00:00:00Z"
    FinishedAt: str = "0001-01-01T00:00:00Z"
    OOMKilled: bool = False
    MonitorPid: int = 0  # the runtime's monitor process (conmon), whose end is the container's
    StartedTs: float = 0.0
    FinishedTs: float = 0.0
    ManuallyStopped: bool = False  # stop/kill by a user: restart policies stand down
    Health: dict[str, Any] | None = None  # Docker's State.Health when a healthcheck is configured

    @property
    def running(self) -> bool:
        return self.Status in ("running", "paused")


@dataclass
class Container:
    id: str
    name: str  # without the leading "/"
    created: str
    created_ts: float
    image: str  # what the user asked for
    image_id: str
    path: str
    args: list[str]
    config: dict[str, Any]
    host_config: dict[str, Any]
    log_path: str
    hostname_path: str = ""
    hosts_path: str = ""
    resolv_conf_path: str = ""
    restart_count: int = 0
    state: State = field(default_factory=State)
    mounts: list[dict[str, Any]] = field(default_factory=list)  # MountPoint fields

    def to_json(self) -> str:
        # shallow: json.dumps walks the nested dicts itself; asdict's deep copy cost ~0.2 ms a save
        d = {name: getattr(self, name) for name in _CONTAINER_FIELDS}
        d["state"] = {name: getattr(self.state, name) for name in _STATE_FIELDS}
        return json.dumps(d)

    @classmethod
    def from_json(cls, s: str) -> Container:
        d = json.loads(s)
        state = d["state"]
        if "ConmonPid" in state:  # records written before the runtime interface named it MonitorPid
            state["MonitorPid"] = state.pop("ConmonPid")
        d["state"] = State(**state)
        return cls(**d)


_CONTAINER_FIELDS = tuple(f.name for f in fields(Container))
_STATE_FIELDS = tuple(f.name for f in fields(State))


class ContainerStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        migrate(conn, "containers", MIGRATIONS)

    def load_all(self) -> list[Container]:
        return [Container.from_json(r[0]) for r in self.conn.execute("SELECT record FROM containers")]

    def add(self, c: Container) -> None:
        with transaction(self.conn):
            self.conn.execute("INSERT INTO containers VALUES (?,?,?)", (c.id, c.name, c.to_json()))

    def save(self, c: Container) -> None:
        with transaction(self.conn):
            self.conn.execute("UPDATE containers SET name=?, record=? WHERE id=?", (c.name, c.to_json(), c.id))

    def delete(self, cid: str) -> None:
        with transaction(self.conn):
            self.conn.execute("DELETE FROM containers WHERE id=?", (cid,))


# -- checking (berth check; berthd's start-up) ----------------------------------------------------
def check(conn: sqlite3.Connection) -> Findings:
    """Every container record reads back. Changes nothing (``conn`` may be read-only)."""
    f = Findings()
    if (p := schema_problem(conn, "containers", MIGRATIONS)) is not None:
        f.problem("database", p)
    for cid, record in conn.execute("SELECT id, record FROM containers"):
        f.checked += 1
        try:
            Container.from_json(record)
        except (ValueError, TypeError, KeyError) as e:
            f.problem(f"container {cid}", f"record cannot be read: {e}")
    return f


def ids(conn: sqlite3.Connection) -> set[str] | None:
    """IDs of the recorded containers; None before the table exists."""
    return column(conn, "SELECT id FROM containers")


def leftovers(conn: sqlite3.Connection, root: str) -> list[Leftover]:
    """``root``: the containers' directories. Directories of no container, interrupted writes, trash."""
    out: list[Leftover] = []
    containers = ids(conn)
    trash = os.path.join(root, ".trash")
    for name in ls(root):
        if name == ".trash":
            continue
        if containers is not None and name not in containers:
            out.append(Leftover(os.path.join(root, name), ORPHAN, "directory of no container", trash))
            continue
        for f in ls(os.path.join(root, name)):
            if is_temp(f):
                out.append(Leftover(os.path.join(root, name, f), TEMP, "interrupted write"))
    return out + trash_contents(trash)
