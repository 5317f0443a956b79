"""``berth check``: verify a data root offline, as borg's ``check`` does for its repository.

It takes berthd's lock (so it never races a running daemon), checks the SQLite database's
integrity, then asks each store to check itself, changing nothing (``check()`` in each store's
module): layers (directories, tar-split records and, with ``--verify-data``, that every layer
still reassembles to the exact tar its diff ID names), images (config blobs against their IDs,
top layers, tags), containers, volumes and the content store (references
whose blob is gone; with ``--verify-data``, every blob against its digest). What a crash left on disk,
temporary files and files without a record (berth/daemon/leftovers.py), is reported as
leftovers, not problems: berthd removes them when it next starts.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from dataclasses import dataclass, field

from berth.storecheck import Leftover, Problem


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    leftovers: list[Leftover] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(data_root: str, verify_data: bool = False) -> Report:
    from berth.build import cache as build_cache
    from berth.containers import store as containers
    from berth.content.store import at as content_at
    from berth.daemon import leftovers
    from berth.images import store as images
    from berth.layers import drivers
    from berth.layers import store as layers
    from berth.network import store as networks
    from berth.volumes import store as volumes

    r = Report()
    db_path = os.path.join(data_root, "berth.db")
    if not os.path.exists(db_path):
        r.problems.append(Problem(db_path, "no database (not a Berth data root?)"))
        return r
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            r.problems.append(Problem("database integrity", result))
        # the same directories as berthd's wiring gives each store (berth/daemon/main.py)
        j = os.path.join
        content = content_at(conn, data_root, create=False)
        found = {
            "layers": layers.check(conn, j(data_root, "layers"), drivers.for_check(data_root), verify_data),
            "images": images.check(conn, content, layers.exists_in(conn)),
            "containers": containers.check(conn),
            "networks": networks.check(conn),
            "blobs": content.check(verify_data),
            "build cache entries": build_cache.check(conn),
        }
        for name, f in found.items():
            r.checked[name] = f.checked
        for f in (*found.values(), volumes.check(conn, j(data_root, "volumes"))):
            r.problems += f.problems
        # on disk without a record, and temporaries: left by a crash between a write and its record
        r.leftovers = leftovers.find(data_root, conn)
    finally:
        conn.close()
    return r


def main(argv: list[str] | None = None) -> int:
    import argparse

    from berth.daemon.main import AlreadyRunning, take_lock

    p = argparse.ArgumentParser(prog="berth check", description="Verify a Berth data root (berthd must be stopped).")
    p.add_argument("--data-root", default="/var/lib/berth")
    p.add_argument("--verify-data", action="store_true", help="also reassemble every layer and check its digest")
    a = p.parse_args(argv)
    try:
        fd = take_lock(a.data_root)
    except AlreadyRunning as e:
        print(f"berth check: {e}", file=sys.stderr)
        return 2
    try:
        r = check(a.data_root, a.verify_data)
    finally:
        os.close(fd)
    for k, v in r.checked.items():
        print(f"checked {v} {k}")
    for x in r.leftovers:
        print(f"leftover: {x.path} ({x.what}, {x.kind}; berthd {'adopts' if x.adopt else 'removes'} it when it starts)")
    for problem in r.problems:
        print(f"PROBLEM: {problem}")
    print("ok" if r.ok else f"{len(r.problems)} problem(s)")
    return 0 if r.ok else 1
