"""What a crash leaves in a data root: temporary files and files that no record names.

Every store writes first and records second (a layer is unpacked, then its row commits; a
blob is gzipped to ``.tmp-…``, then renamed), so a SIGKILL between the two leaves a file
nobody will ever read. They are all berthd's own, and whoever holds the data-root lock
(berthd at start-up, ``berth check``) knows nothing else writes there: ``find`` lists them
(``berth check`` reports them) and ``remove`` deletes them (berthd, before its stores open),
except a volume's directory: its data may be a user's, so the volume store adopts it.

Only the stores' own directories are scanned, never inside a layer or a volume, where a
user's file may well be called ``.tmp-x``.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from dataclasses import dataclass

from berth.layers import mount as mnt

TEMP = "temporary file"
ORPHAN = "no record"


@dataclass(frozen=True)
class Leftover:
    path: str
    kind: str  # TEMP or ORPHAN
    what: str  # a few words for the report
    trash: str = ""  # a directory: moved here (same filesystem), then deleted in the background
    adopt: bool = False  # kept: berthd makes a record for it (a volume's data, as Docker's local driver)


def _ls(d: str) -> list[str]:
    try:
        return sorted(os.listdir(d))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _column(conn: sqlite3.Connection, sql: str) -> set[str] | None:
    """The values of one column, or None when the table does not exist yet (a new data root)."""
    try:
        return {r[0] for r in conn.execute(sql) if r[0]}
    except sqlite3.OperationalError:
        return None


def _is_temp(name: str) -> bool:
    return name.startswith(".tmp-") or ".tmp-" in name or name.endswith(".tmp")


def find(data_root: str, conn: sqlite3.Connection) -> list[Leftover]:
    out: list[Leftover] = []
    j = os.path.join
    for name in _ls(data_root):  # engine-id and friends, written with atomic_write
        if name.startswith(".tmp-"):
            out.append(Leftover(j(data_root, name), TEMP, "interrupted atomic write"))
    for name in _ls(j(data_root, "tmp")):
        out.append(Leftover(j(data_root, "tmp", name), TEMP, "scratch file of an interrupted load, pull or commit"))
    # layers: tar-split records and driver directories
    layers = _column(conn, "SELECT cache_id FROM layers")
    rw = _column(conn, "SELECT cid FROM rw_layers")
    split_dir = j(data_root, "layers", "tarsplit")
    for name in _ls(split_dir):
        if _is_temp(name):
            out.append(Leftover(j(split_dir, name), TEMP, "tar-split record being written"))
        elif layers is not None and name.removesuffix(".gz") not in layers:
            out.append(Leftover(j(split_dir, name), ORPHAN, "tar-split record of no layer"))
    for base, trash in ((j(data_root, "overlay"), j(data_root, "overlay", ".trash")),
                        (j(data_root, "vfs", "dir"), j(data_root, "vfs", ".trash"))):
        if layers is None or rw is None:
            break
        for name in _ls(base):
            if name in ("l", "empty", ".trash") or name in layers or name in rw:
                continue
            if name.endswith("-init") and name[:-5] in rw:
                continue
            out.append(Leftover(j(base, name), ORPHAN, "layer directory of no layer or container", trash))
    containers = _column(conn, "SELECT id FROM containers")
    cdir = j(data_root, "containers")
    if rw is not None and containers is not None:
        for cid in sorted(rw - containers):
            out.append(Leftover(f"rw_layers/{cid}", ORPHAN, "writable layer of no container (removed at start)"))
    for name in _ls(cdir):
        if name == ".trash":
            continue
        if containers is not None and name not in containers:
            out.append(Leftover(j(cdir, name), ORPHAN, "directory of no container", j(cdir, ".trash")))
            continue
        for f in _ls(j(cdir, name)):
            if _is_temp(f):
                out.append(Leftover(j(cdir, name, f), TEMP, "interrupted write"))
    vdir = j(data_root, "volumes")
    volumes = _column(conn, "SELECT name FROM volumes")
    for name in _ls(vdir):
        if name == ".trash":
            continue
        if name.startswith(".tmp-"):
            out.append(Leftover(j(vdir, name), TEMP, "volume being created", j(vdir, ".trash")))
        elif volumes is not None and name not in volumes:
            out.append(Leftover(j(vdir, name), ORPHAN, "volume directory of no volume",
                                adopt=True))
    images = _column(conn, "SELECT id FROM images")
    blobs = j(data_root, "image", "blobs", "sha256")
    for name in _ls(blobs):
        if _is_temp(name):
            out.append(Leftover(j(blobs, name), TEMP, "interrupted atomic write"))
        elif images is not None and "sha256:" + name not in images:
            out.append(Leftover(j(blobs, name), ORPHAN, "config blob of no image"))
    compressed = _column(conn, "SELECT digest FROM compressed_layers")
    dblobs = j(data_root, "distribution", "blobs")
    for name in _ls(dblobs):
        if _is_temp(name):
            out.append(Leftover(j(dblobs, name), TEMP, "layer being compressed for a push"))
        elif compressed is not None and "sha256:" + name not in compressed:
            out.append(Leftover(j(dblobs, name), ORPHAN, "compressed layer of no record"))
    for trash in (j(data_root, "overlay", ".trash"), j(data_root, "vfs", ".trash"), j(cdir, ".trash"),
                  j(vdir, ".trash")):
        for name in _ls(trash):
            out.append(Leftover(j(trash, name), TEMP, "removal in progress"))
    return out


def remove(items: list[Leftover]) -> None:
    """Delete what ``find`` listed (the caller holds the data-root lock). Directories go to their
    trash, which the stores empty in the background as they open; files are unlinked."""
    from berth.fsutil import remove_tree

    for x in items:
        if x.adopt or not x.path.startswith("/") or os.path.dirname(x.path).endswith(".trash"):
            continue  # rw layer rows: the containers' restore removes them; trash empties itself
        for target in mounts_under(x.path):
            mnt.unmount(target)  # never delete through a volume's or a rootfs's mount
        if x.trash and os.path.isdir(x.path) and not os.path.islink(x.path):
            os.makedirs(x.trash, exist_ok=True)
            os.rename(x.path, os.path.join(x.trash, secrets.token_hex(8)))
        else:
            remove_tree(x.path)


def mounts_under(path: str) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    prefix = path.rstrip("/") + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4]
            if target == path or target.startswith(prefix):
                out.append(target)
    return sorted(out, key=len, reverse=True)
