"""The local volume driver: named and anonymous volumes under ``<data-root>/volumes/<name>/_data``.

Volumes outlive containers: nothing here is removed except by an explicit ``remove`` or
``prune``. Volumes with ``type``/``device``/``o`` options (tmpfs, bind, any filesystem) are
mounted on ``_data`` when the first container using them starts and unmounted when the last
one stops, as Docker's local driver does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from berth import crashpoint
from berth.db import Step, migrate, schema_problem, transaction
from berth.errors import Conflict, InvalidParameter, NotFound
from berth.fsutil import discard_tree, empty_trash
from berth.layers import mount as mnt
from berth.storecheck import ORPHAN, TEMP, Findings, Leftover, column, ls, trash_contents

SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL,
    labels TEXT NOT NULL,
    options TEXT NOT NULL,
    anonymous INTEGER NOT NULL,
    created REAL NOT NULL
);
"""
MIGRATIONS: list[Step] = [SCHEMA]
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+\Z")  # \Z: $ would let a final newline through
ANON_LABEL = "com.docker.volume.anonymous"
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_MS_BIND = 4096
_MS_REC = 16384


@dataclass
class Volume:
    name: str
    driver: str
    labels: dict[str, str]
    options: dict[str, str]
    anonymous: bool
    created: float
    mountpoint: str = ""
    users: set[str] = field(default_factory=set)

    def created_at(self) -> str:
        return datetime.fromtimestamp(self.created).astimezone().isoformat(timespec="seconds")


class VolumeNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"get {name}: no such volume")


def validate_name(name: str) -> None:
    if len(name) > 255:  # one directory under the volumes root: a longer name is ENAMETOOLONG
        raise InvalidParameter(f"create {name[:64]}...: volume name is longer than 255 characters")
    if not _NAME.match(name) or ".." in name:
        raise InvalidParameter(
            f'create {name}: "{name}" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path')


class VolumeStore:
    def __init__(self, conn: sqlite3.Connection, root: str) -> None:
        self.conn = conn
        self.root = root
        self.trash = os.path.join(root, ".trash")
        os.makedirs(root, mode=0o701, exist_ok=True)
        migrate(conn, "volumes", MIGRATIONS)
        empty_trash(self.trash)
        self._mounted: dict[str, int] = {}  # name -> number of running containers using the mount
        for name in os.listdir(root):
            if name != ".trash" and not name.startswith(".tmp-") and not self.exists(name):
                self._adopt(name)

    def _adopt(self, name: str) -> None:
        """A directory without a record, left by a crash in create or remove: a volume again, as
        Docker's local driver takes any directory it finds. Its data is never thrown away."""
        d = os.path.join(self.root, name)
        if not os.path.isdir(d) or os.path.islink(d) or not _NAME.match(name) or ".." in name:
            return
        os.makedirs(os.path.join(d, "_data"), mode=0o755, exist_ok=True)
        with transaction(self.conn):
            self.conn.execute("INSERT OR IGNORE INTO volumes VALUES (?,?,?,?,?,?)",
                              (name, "local", "{}", "{}", 0, os.path.getmtime(d)))

    def _row(self, row: sqlite3.Row) -> Volume:
        return Volume(row["name"], row["driver"], json.loads(row["labels"]), json.loads(row["options"]),
                      bool(row["anonymous"]), row["created"], self.data_path(row["name"]))

    def data_path(self, name: str) -> str:
        return os.path.join(self.root, name, "_data")

    def get(self, name: str) -> Volume:
        row = self.conn.execute("SELECT * FROM volumes WHERE name=?", (name,)).fetchone()
        if row is None:
            raise VolumeNotFound(name)
        return self._row(row)

    def exists(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM volumes WHERE name=?", (name,)).fetchone() is not None

    def list(self) -> list[Volume]:
        return [self._row(r) for r in self.conn.execute("SELECT * FROM volumes ORDER BY created")]

    def create(self, name: str | None, driver: str = "local", options: dict[str, str] | None = None,
               labels: dict[str, str] | None = None, anonymous: bool = False) -> Volume:
        driver = driver or "local"
        if driver != "local":
            raise NotFound(f"error looking up volume plugin {driver}: plugin \"{driver}\" not found")
        options = dict(options or {})
        for k in options:
            if k not in ("type", "device", "o", "size"):
                raise InvalidParameter(f"invalid option: \"{k}\"")
        if options.get("type") and not options.get("device") and options.get("type") != "tmpfs":
            raise InvalidParameter("missing required option: \"device\"")
        labels = dict(labels or {})
        if name is None:
            name = secrets.token_hex(32)
        validate_name(name)
        if self.exists(name):
            vol = self.get(name)
            if options and options != vol.options:
                raise Conflict(f"volume {name} already exists with different options")
            return vol
        if anonymous:
            labels[ANON_LABEL] = ""
        d = os.path.join(self.root, name)
        if os.path.lexists(d) and not (os.path.isdir(d) and not os.path.islink(d)):
            discard_tree(d, self.trash)
        reused = os.path.lexists(d)
        if reused:  # no record yet a directory: a crash's leftover, its data kept
            mnt.unmount(self.data_path(name))
            os.makedirs(self.data_path(name), mode=0o755, exist_ok=True)
        else:  # made whole beside, then renamed in: a crash leaves a .tmp- directory, never half a volume
            tmp = os.path.join(self.root, f".tmp-{secrets.token_hex(8)}")
            os.makedirs(os.path.join(tmp, "_data"), mode=0o755)
            os.rename(tmp, d)
        try:
            with transaction(self.conn):
                self.conn.execute("INSERT INTO volumes VALUES (?,?,?,?,?,?)",
                                  (name, driver, json.dumps(labels), json.dumps(options), int(anonymous), time.time()))
        except BaseException:
            if not reused:
                discard_tree(d, self.trash)
            raise
        return self.get(name)

    def remove(self, name: str, users: list[str], force: bool = False) -> None:
        if not self.exists(name):
            if force:
                return
            raise VolumeNotFound(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        with transaction(self.conn):
            self.conn.execute("DELETE FROM volumes WHERE name=?", (name,))
        crashpoint.hit("volume-rm-after-db")
        self._unmount(name)
        discard_tree(os.path.join(self.root, name), self.trash)

    # -- mounting volumes that have options (tmpfs, bind, filesystems) -------------------------------
    def acquire(self, name: str) -> str:
        """The host path to mount into a container; mounts option-backed volumes on first use."""
        vol = self.get(name)
        path = vol.mountpoint
        if vol.options.get("type") or vol.options.get("device"):
            if self._mounted.get(name, 0) == 0 and not mnt.is_mounted(path):
                self._mount(vol)
            self._mounted[name] = self._mounted.get(name, 0) + 1
        return path

    def release(self, name: str) -> None:
        n = self._mounted.get(name, 0)
        if n <= 1:
            self._mounted.pop(name, None)
            if n == 1:
                self._unmount(name)
        else:
            self._mounted[name] = n - 1

    def _mount(self, vol: Volume) -> None:
        typ = vol.options.get("type") or "none"
        device = vol.options.get("device") or typ
        opts = [o for o in (vol.options.get("o") or "").split(",") if o]
        flags = 0
        if "bind" in opts or typ == "none":
            flags |= _MS_BIND | (_MS_REC if "rbind" in opts else 0)
            opts = [o for o in opts if o not in ("bind", "rbind")]
            if not os.path.isdir(device):
                raise InvalidParameter(f"error while mounting volume '{vol.mountpoint}': failed to mount local "
                                       f"volume: mount {device}:{vol.mountpoint}, flags: 0x1000: no such file or "
                                       "directory")
        if typ == "tmpfs" and vol.options.get("size") and not any(o.startswith("size=") for o in opts):
            opts.append("size=" + vol.options["size"])
        rc = _libc.mount(device.encode(), vol.mountpoint.encode(), None if flags & _MS_BIND else typ.encode(),
                         flags, ",".join(opts).encode() or None)
        if rc != 0:
            e = ctypes.get_errno()
            raise InvalidParameter(f"error while mounting volume '{vol.mountpoint}': failed to mount local volume: "
                                   f"mount {device}:{vol.mountpoint}: {os.strerror(e)}")

    def _unmount(self, name: str) -> None:
        self._mounted.pop(name, None)
        mnt.unmount(self.data_path(name))

    def unmount_all(self) -> None:
        for name in list(self._mounted):
            self._unmount(name)


# -- checking (berth check; berthd's start-up) ----------------------------------------------------
def check(conn: sqlite3.Connection, root: str) -> Findings:
    """Every volume's directory is there. Changes nothing (``conn`` may be read-only)."""
    f = Findings()
    if (p := schema_problem(conn, "volumes", MIGRATIONS)) is not None:
        f.problem("database", p)
    for (name,) in conn.execute("SELECT name FROM volumes"):
        f.checked += 1
        if not os.path.isdir(os.path.join(root, name, "_data")):
            f.problem(f"volume {name}", f"directory {os.path.join(root, name, '_data')} is missing")
    return f


def leftovers(conn: sqlite3.Connection, root: str) -> list[Leftover]:
    """Volumes being created, directories of no volume (adopted: their data may be a user's), trash."""
    out: list[Leftover] = []
    volumes = column(conn, "SELECT name FROM volumes")
    trash = os.path.join(root, ".trash")
    for name in ls(root):
        if name == ".trash":
            continue
        if name.startswith(".tmp-"):
            out.append(Leftover(os.path.join(root, name), TEMP, "volume being created", trash))
        elif volumes is not None and name not in volumes:
            out.append(Leftover(os.path.join(root, name), ORPHAN, "volume directory of no volume", adopt=True))
    return out + trash_contents(trash)


def inspect(vol: Volume, usage: dict[str, int] | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "CreatedAt": vol.created_at(),
        "Driver": vol.driver,
        "Labels": vol.labels or None,
        "Mountpoint": vol.mountpoint,
        "Name": vol.name,
        "Options": vol.options or None,
        "Scope": "local",
    }
    if usage is not None:
        d["UsageData"] = usage
    return d
