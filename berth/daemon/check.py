"""``berth check``: verify a data root offline, as borg's ``check`` does for its repository.

It takes berthd's lock (so it never races a running daemon) and checks, without changing
anything: the SQLite database's integrity; every image's config blob against its ID and
its layer chain; every layer's directory and tar-split record; with ``--verify-data``,
that every layer still reassembles to the exact tar its diff ID names; and what a crash
left on disk, temporary files and files without a record (berth/daemon/leftovers.py).
Those are reported as leftovers, not problems: berthd removes them when it next starts.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
from dataclasses import dataclass, field


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


class _Hasher:
    def __init__(self) -> None:
        self.h = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.h.update(data)
        return len(data)


def check(data_root: str, verify_data: bool = False) -> Report:
    from berth.daemon import leftovers
    from berth.layers.tarapply import assemble

    r = Report()
    db_path = os.path.join(data_root, "berth.db")
    if not os.path.exists(db_path):
        r.problems.append(f"{db_path}: no database (not a Berth data root?)")
        return r
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok":
        r.problems.append(f"database integrity: {result}")
    # the drivers' layouts, read directly: constructing a driver would tidy its directories
    if os.path.isdir(os.path.join(data_root, "overlay")):
        base = os.path.join(data_root, "overlay")

        def layer_path(cache_id: str) -> str:
            return os.path.join(base, cache_id, "diff")
    else:
        base = os.path.join(data_root, "vfs", "dir")

        def layer_path(cache_id: str) -> str:
            return os.path.join(base, cache_id)
    layers = {row["chain_id"]: row for row in conn.execute("SELECT * FROM layers")}
    split_dir = os.path.join(data_root, "layers", "tarsplit")
    for cid, row in layers.items():
        if row["parent"] and row["parent"] not in layers:
            r.problems.append(f"layer {cid}: parent {row['parent']} is missing")
        path = layer_path(row["cache_id"])
        split = os.path.join(split_dir, row["cache_id"] + ".gz")
        if not os.path.isdir(path):
            r.problems.append(f"layer {cid}: directory {path} is missing")
            continue
        if not os.path.exists(split):
            r.problems.append(f"layer {cid}: tar-split record {split} is missing")
            continue
        if verify_data:
            h = _Hasher()
            try:
                with open(split, "rb") as f:
                    assemble(path, f, h)  # type: ignore[arg-type]
            except (OSError, ValueError) as e:
                r.problems.append(f"layer {cid}: cannot be reassembled: {e}")
                continue
            got = "sha256:" + h.h.hexdigest()
            if got != row["diff_id"]:
                r.problems.append(f"layer {cid}: content changed on disk: tar is {got}, diff ID {row['diff_id']}")
    r.checked["layers"] = len(layers)
    blobs = os.path.join(data_root, "image", "blobs", "sha256")
    images = conn.execute("SELECT id, top_layer FROM images").fetchall()
    for row in images:
        iid = row["id"]
        blob = os.path.join(blobs, iid.split(":", 1)[1])
        try:
            with open(blob, "rb") as f:
                if "sha256:" + hashlib.sha256(f.read()).hexdigest() != iid:
                    r.problems.append(f"image {iid}: config blob does not match the image ID")
        except FileNotFoundError:
            r.problems.append(f"image {iid}: config blob {blob} is missing")
        if row["top_layer"] and row["top_layer"] not in layers:
            r.problems.append(f"image {iid}: top layer {row['top_layer']} is missing")
    r.checked["images"] = len(images)
    for (name, iid) in conn.execute("SELECT name, image_id FROM refs"):
        if not any(iid == row["id"] for row in images):
            r.problems.append(f"tag {name}: points at missing image {iid}")
    # on disk without a record, and temporaries: left by a crash between a write and its record
    r.leftovers = [f"{x.path} ({x.what}, {x.kind}; berthd {'adopts' if x.adopt else 'removes'} it when it starts)"
                   for x in leftovers.find(data_root, conn)]
    r.checked["containers"] = conn.execute("SELECT COUNT(*) FROM containers").fetchone()[0]
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
        print(f"leftover: {x}")
    for x in r.problems:
        print(f"PROBLEM: {x}")
    print("ok" if r.ok else f"{len(r.problems)} problem(s)")
    return 0 if r.ok else 1
