"""What a store's own check finds, in one shape for every store (``berth check`` prints them).

Each store module has a ``check(…) -> Findings`` that looks at its own records and files only,
changing nothing, and a ``leftovers(…)`` listing what a crash left in its directories (files
written but never recorded, temporaries, trash). Both take a connection that may be read-only
and tolerate a data root whose tables do not exist yet. ``berth.daemon.check`` and
``berth.daemon.leftovers`` call them; neither reads another package's tables or paths.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field

TEMP = "temporary file"
ORPHAN = "no record"


@dataclass(frozen=True)
class Problem:
    """Damage: a record without its data, data that no longer matches its digest."""

    subject: str  # "layer sha256:…", "image sha256:…", "tag busybox:latest", "database"
    detail: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.detail}"


@dataclass(frozen=True)
class Leftover:
    """What a crash left: harmless, and removed (or adopted) by berthd when it next starts."""

    path: str
    kind: str  # TEMP or ORPHAN
    what: str  # a few words for the report
    trash: str = ""  # a directory: moved here (same filesystem), then deleted in the background
    adopt: bool = False  # kept: berthd makes a record for it (a volume's data, as Docker's local driver)


@dataclass
class Findings:
    checked: int = 0  # records looked at
    problems: list[Problem] = field(default_factory=list)

    def problem(self, subject: str, detail: str) -> None:
        self.problems.append(Problem(subject, detail))


def ls(d: str) -> list[str]:
    try:
        return sorted(os.listdir(d))
    except (FileNotFoundError, NotADirectoryError):
        return []


def column(conn: sqlite3.Connection, sql: str) -> set[str] | None:
    """The values of one column, or None when the table does not exist yet (a new data root)."""
    try:
        return {r[0] for r in conn.execute(sql) if r[0]}
    except sqlite3.OperationalError:
        return None


def is_temp(name: str) -> bool:
    return name.startswith(".tmp-") or ".tmp-" in name or name.endswith(".tmp")


def trash_contents(trash: str) -> list[Leftover]:
    return [Leftover(os.path.join(trash, name), TEMP, "removal in progress") for name in ls(trash)]
