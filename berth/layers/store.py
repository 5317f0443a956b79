"""The layer store: read-only layers keyed by chain ID, and containers' writable layers.

A layer is stored once however many images share it (the chain ID names the layer
*and* everything below it). Extraction happens in a scratch directory that only
becomes a layer once the SQLite row commits; a failed or hostile tar leaves nothing.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, BinaryIO

from berth.db import transaction
from berth.fsutil import dir_size, syncfs
from berth.layers import mount as mnt
from berth.layers.drivers import Driver
from berth.layers.tarapply import apply_tar, assemble

SCHEMA = """
CREATE TABLE IF NOT EXISTS layers (
    chain_id TEXT PRIMARY KEY,
    diff_id TEXT NOT NULL,
    parent TEXT REFERENCES layers(chain_id),
    cache_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    tar_size INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rw_layers (
    cid TEXT PRIMARY KEY,
    parent TEXT REFERENCES layers(chain_id),
    created REAL NOT NULL
);
"""


def chain_id(parent: str | None, diff_id: str) -> str:
    if parent is None:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()


@dataclass(frozen=True)
class Layer:
    chain_id: str
    diff_id: str
    parent: str | None
    cache_id: str
    size: int
    tar_size: int


@dataclass
class Extracted:
    """A layer unpacked into scratch space, not yet part of the store."""

    chain_id: str
    diff_id: str
    parent: str | None
    cache_id: str
    size: int
    tar_size: int


class LayerNotFound(KeyError):
    pass


class LayerStore:
    def __init__(self, conn: sqlite3.Connection, root: str, driver: Driver) -> None:
        self.conn = conn
        self.driver = driver
        self.split_dir = os.path.join(root, "tarsplit")
        os.makedirs(self.split_dir, exist_ok=True)
        conn.executescript(SCHEMA)
        self._cache: dict[str, Layer] = {}

    # -- read -------------------------------------------------------------------------
    def get(self, cid: str) -> Layer:
        layer = self._cache.get(cid)
        if layer is None:
            row = self.conn.execute("SELECT * FROM layers WHERE chain_id=?", (cid,)).fetchone()
            if row is None:
                raise LayerNotFound(cid)
            layer = Layer(row["chain_id"], row["diff_id"], row["parent"], row["cache_id"], row["size"],
                          row["tar_size"])
            self._cache[cid] = layer
        return layer

    def exists(self, cid: str) -> bool:
        try:
            self.get(cid)
            return True
        except LayerNotFound:
            return False

    def chain(self, top: str | None) -> list[Layer]:
        """Layers from the top one down to the base."""
        out = []
        while top:
            layer = self.get(top)
            out.append(layer)
            top = layer.parent
        return out

    def all(self) -> list[Layer]:
        return [self.get(r[0]) for r in self.conn.execute("SELECT chain_id FROM layers")]

    # -- write: register a layer from an uncompressed, digest-verified tar -------------
    def extract(self, tar_path: str, diff_id: str, parent: str | None,
                pending: dict[str, Extracted] | None = None) -> Extracted | None:
        """Unpack into scratch space (blocking; run in a thread). ``None`` if already stored.

        ``pending`` holds layers extracted earlier in the same load, not yet committed,
        so a parent may be one of them.
        """
        cid = chain_id(parent, diff_id)
        if self.exists(cid):
            return None
        cache_id = secrets.token_hex(32)
        parent_cache = None
        if parent:
            parent_cache = pending[parent].cache_id if pending and parent in pending else self.get(parent).cache_id
        path = self.driver.new_layer(cache_id, parent_cache)
        split_path = os.path.join(self.split_dir, cache_id + ".gz")
        try:
            with open(split_path + ".tmp", "wb") as split:
                size = apply_tar(tar_path, path, self.driver.whiteouts, split)
                split.flush()
                os.fsync(split.fileno())
            os.rename(split_path + ".tmp", split_path)
            syncfs(path)  # the layer's files must be durable before the row that names them
        except BaseException:
            self.driver.remove(cache_id)
            for p in (split_path, split_path + ".tmp"):
                if os.path.exists(p):
                    os.unlink(p)
            raise
        return Extracted(cid, diff_id, parent, cache_id, size, os.path.getsize(tar_path))

    def commit(self, ex: Extracted | None) -> None:
        """Make an extracted layer part of the store (loop thread; one transaction)."""
        if ex is None:
            return
        if self.exists(ex.chain_id):  # a concurrent load won the race
            self.discard(ex)
            return
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO layers VALUES (?,?,?,?,?,?,?)",
                (ex.chain_id, ex.diff_id, ex.parent, ex.cache_id, ex.size, ex.tar_size, time.time()),
            )

    def discard(self, ex: Extracted | None) -> None:
        if ex is None:
            return
        self.driver.remove(ex.cache_id)
        p = os.path.join(self.split_dir, ex.cache_id + ".gz")
        if os.path.exists(p):
            os.unlink(p)

    def tar_stream(self, cid: str, out: BinaryIO) -> None:
        """Write the layer's original tar, byte for byte (blocking)."""
        layer = self.get(cid)
        with open(os.path.join(self.split_dir, layer.cache_id + ".gz"), "rb") as split:
            assemble(self.driver.layer_path(layer.cache_id), split, out)

    def prune(self, keep: set[str]) -> list[str]:
        """Delete every layer no chain in ``keep`` (nor any container) needs; return their chain IDs."""
        needed: set[str] = set()
        rw_parents = {r[0] for r in self.conn.execute("SELECT parent FROM rw_layers") if r[0]}
        for top in keep | rw_parents:
            for layer in self.chain(top):
                needed.add(layer.chain_id)
        doomed = [layer for layer in self.all() if layer.chain_id not in needed]
        # children first, so the parent foreign key holds at every step
        doomed.sort(key=lambda x: -len(self.chain(x.chain_id)))
        for layer in doomed:
            with transaction(self.conn):
                self.conn.execute("DELETE FROM layers WHERE chain_id=?", (layer.chain_id,))
            self._cache.pop(layer.chain_id, None)
            self.driver.remove(layer.cache_id)
            p = os.path.join(self.split_dir, layer.cache_id + ".gz")
            if os.path.exists(p):
                os.unlink(p)
        return [x.chain_id for x in doomed]

    # -- containers' writable layers ----------------------------------------------------
    def create_rw(self, cid: str, parent: str | None) -> None:
        lowers = [x.cache_id for x in self.chain(parent)]
        self.driver.new_rw(cid, lowers)
        with transaction(self.conn):
            self.conn.execute("INSERT INTO rw_layers VALUES (?,?,?)", (cid, parent, time.time()))

    def _rw_parent(self, cid: str) -> str | None:
        row = self.conn.execute("SELECT parent FROM rw_layers WHERE cid=?", (cid,)).fetchone()
        if row is None:
            raise LayerNotFound(cid)
        return row[0]

    def mount_rw(self, cid: str) -> str:
        """Mount the container's rootfs (idempotent) and return its path."""
        target = self.driver.rootfs_path(cid)
        spec = self.driver.rootfs_mount(cid, [x.cache_id for x in self.chain(self._rw_parent(cid))])
        if spec is not None and not mnt.is_mounted(target):
            mnt.mount(spec, target)
        return target

    def unmount_rw(self, cid: str) -> None:
        mnt.unmount(self.driver.rootfs_path(cid))  # a no-op where the driver did not mount

    def remove_rw(self, cid: str) -> None:
        self.unmount_rw(cid)
        self.driver.remove(cid)
        with transaction(self.conn):
            self.conn.execute("DELETE FROM rw_layers WHERE cid=?", (cid,))

    def changes(self, cid: str) -> list[dict[str, Any]]:
        """``docker diff`` of a container's writable layer (blocking): Kind 0 modified, 1 added,
        2 deleted, sorted by path; the driver decides how its layout is compared."""
        return self.driver.changes(cid, [x.cache_id for x in self.chain(self._rw_parent(cid))])

    def write_diff(self, cid: str, out: BinaryIO) -> None:
        """The writable layer as an image layer tar, deletions as ``.wh.`` entries (blocking)."""
        self.driver.write_diff(cid, [x.cache_id for x in self.chain(self._rw_parent(cid))], out)

    def graph_data(self, top: str | None) -> dict[str, str]:
        """``GraphDriver.Data`` of an image whose top layer is ``top``."""
        return self.driver.graph_data([x.cache_id for x in self.chain(top)])

    def rw_size(self, cid: str) -> int:
        return dir_size(self.driver.rw_path(cid))
