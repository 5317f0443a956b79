"""What a crash leaves in a data root: temporary files and files that no record names.

Every store writes first and records second (a layer is unpacked, then its row commits; a
blob is gzipped to ``.tmp-…``, then renamed), so a SIGKILL between the two leaves a file
nobody will ever read. They are all berthd's own, and whoever holds the data-root lock
(berthd at start-up, ``berth check``) knows nothing else writes there: ``find`` lists them
(``berth check`` reports them) and ``remove`` deletes them (berthd, before its stores open),
except a volume's directory: its data may be a user's, so the volume store adopts it.

Each store lists its own (``leftovers()`` in its module, scanning only its own directories,
never inside a layer or a volume, where a user's file may well be called ``.tmp-x``); this
module asks each of them, and adds the daemon's own scratch files.
"""

from __future__ import annotations

import os
import secrets
import sqlite3

from berth.layers import mount as mnt
from berth.storecheck import ORPHAN, TEMP, Leftover, ls

__all__ = ["ORPHAN", "TEMP", "Leftover", "find", "mounts_under", "remove"]


def find(data_root: str, conn: sqlite3.Connection) -> list[Leftover]:
    from berth.containers import store as containers
    from berth.content.store import at as content_at
    from berth.layers import drivers
    from berth.layers import store as layers
    from berth.volumes import store as volumes

    j = os.path.join
    out = [Leftover(j(data_root, name), TEMP, "interrupted atomic write")  # engine-id and friends
           for name in ls(data_root) if name.startswith(".tmp-")]
    out += [Leftover(j(data_root, "tmp", name), TEMP, "scratch file of an interrupted load, pull or commit")
            for name in ls(j(data_root, "tmp"))]
    # the same directories as berthd's wiring gives each store (berth/daemon/main.py)
    out += layers.leftovers(conn, j(data_root, "layers"), drivers.existing(data_root), containers.ids(conn))
    out += containers.leftovers(conn, j(data_root, "containers"))
    out += volumes.leftovers(conn, j(data_root, "volumes"))
    out += content_at(conn, data_root, create=False).leftovers()
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
