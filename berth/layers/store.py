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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

from berth.db import Step, migrate, schema_problem, transaction
from berth.fsutil import dir_size, syncfs
from berth.layers import mount as mnt
from berth.layers.drivers import Driver
from berth.layers.spool import Spool
from berth.layers.tarapply import apply_tar, apply_tar_stream
from berth.layers.tarsplit import assemble
from berth.storecheck import ORPHAN, TEMP, Findings, Leftover, column, is_temp, ls

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
# Version 2: deleting a layer row makes SQLite look for rows naming it as parent (the foreign keys);
# without these indexes every prune step scanned both tables.
MIGRATIONS: list[Step] = [SCHEMA, """
CREATE INDEX IF NOT EXISTS layers_parent ON layers(parent);
CREATE INDEX IF NOT EXISTS rw_layers_parent ON rw_layers(parent);
"""]


# Threads creating one layer's files (``bench/layers_bench.py --threads 1,2,4`` measures them).
# One: with layer directories placed by ``spread_children`` a file costs ~20 µs of kernel time
# and the pool's hand-offs cost more than they overlap (debian 10,430 entries/s on one thread,
# 8,048 on two); the pool paid only while each creation cost ~0.5 ms.
EXTRACT_THREADS = 1


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
        migrate(conn, "layers", MIGRATIONS)
        self._cache: dict[str, Layer] = {}
        self.extract_threads = EXTRACT_THREADS

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
                pending: dict[str, Extracted] | None = None, offset: int = 0, size: int | None = None,
                sync: bool = True) -> Extracted | None:
        """Unpack into scratch space (blocking; run in a thread). ``None`` if already stored.

        ``pending`` holds layers extracted earlier in the same load, not yet committed,
        so a parent may be one of them. ``offset``/``size``: the tar is that range of ``tar_path``.
        ``sync=False``: the caller calls ``sync()`` before committing (one flush for several
        layers, once its temporary files are gone and need not be written out).
        """
        cid = chain_id(parent, diff_id)
        if self.exists(cid):
            return None
        parent_cache = None
        if parent:
            parent_cache = pending[parent].cache_id if pending and parent in pending else self.get(parent).cache_id

        def apply(path: str, split: BinaryIO) -> int:
            # threads only into an empty directory (vfs starts from a copy of the parent)
            threads = 1 if os.listdir(path) else self.extract_threads
            return apply_tar(tar_path, path, self.driver.whiteouts, split, offset, size, threads)
        return self._extract(cid, diff_id, parent, parent_cache, apply,
                             lambda: os.path.getsize(tar_path) if size is None else size, sync)

    @property
    def needs_parent_files(self) -> bool:
        """Whether a layer is made from a copy of its parent's files (vfs), so it cannot be
        extracted before its parent; overlay layers are independent directories."""
        return self.driver.whiteouts == "vfs"

    def extract_stream(self, tar: Spool, diff_id: str, parent: str | None, parent_cache: str | None,
                       sync: bool = False) -> Extracted:
        """``extract`` from a tar still being written (blocking; run in a thread of its own, as
        reads wait for the writer). ``parent_cache``: the parent's cache ID, needed only when
        ``needs_parent_files``. The caller verifies the tar's digests and discards the result
        when they do not match; a ``SpoolAborted`` writer leaves nothing here. The caller has
        checked that the layer is not stored already (this thread reads no table)."""
        cid = chain_id(parent, diff_id)

        def apply(path: str, split: BinaryIO) -> int:
            root_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                with tar.reader() as raw, tar.reader() as split_src:
                    return apply_tar_stream(raw, split_src, root_fd, self.driver.whiteouts, split, tar.final_size)
            finally:
                os.close(root_fd)
        return self._extract(cid, diff_id, parent, parent_cache, apply, tar.final_size, sync)

    def _extract(self, cid: str, diff_id: str, parent: str | None, parent_cache: str | None,
                 apply: Callable[[str, BinaryIO], int], tar_size: Callable[[], int], sync: bool) -> Extracted:
        cache_id = secrets.token_hex(32)
        path = self.driver.new_layer(cache_id, parent_cache)
        split_path = os.path.join(self.split_dir, cache_id + ".gz")
        try:
            with open(split_path + ".tmp", "wb") as split:
                data_size = apply(path, split)
                split.flush()
                if sync:
                    os.fsync(split.fileno())
            os.rename(split_path + ".tmp", split_path)
            if sync:
                syncfs(path)  # the layer's files must be durable before the row that names them
        except BaseException:
            self.driver.remove(cache_id)
            for p in (split_path, split_path + ".tmp"):
                if os.path.exists(p):
                    os.unlink(p)
            raise
        return Extracted(cid, diff_id, parent, cache_id, data_size, tar_size())

    def sync(self, extracted: Iterable[Extracted]) -> None:
        """Make layers extracted with ``sync=False`` durable, with their tar-split records: one
        ``syncfs`` per filesystem involved."""
        devices: set[int] = set()
        for path in [self.split_dir] + [self.driver.layer_path(ex.cache_id) for ex in extracted]:
            dev = os.stat(path).st_dev
            if dev not in devices:
                devices.add(dev)
                syncfs(path)

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
        self.make_rw(cid, parent)
        self.record_rw(cid, parent)

    def make_rw(self, cid: str, parent: str | None) -> None:
        """The writable layer's files (blocking: vfs copies the image; safe in a worker thread, as
        it writes no row); ``record_rw`` then records it, on the thread that owns the database."""
        self.driver.new_rw(cid, [x.cache_id for x in self.chain(parent)])

    def record_rw(self, cid: str, parent: str | None) -> None:
        with transaction(self.conn):
            self.conn.execute("INSERT INTO rw_layers VALUES (?,?,?)", (cid, parent, time.time()))

    def _rw_parent(self, cid: str) -> str | None:
        row = self.conn.execute("SELECT parent FROM rw_layers WHERE cid=?", (cid,)).fetchone()
        if row is None:
            raise LayerNotFound(cid)
        parent: str | None = row[0]
        return parent

    def mount_rw(self, cid: str, volatile: bool = False) -> str:
        """Mount the container's rootfs (idempotent) and return its path; ``volatile``: for one run
        of a container removed after it (the driver may skip syncing its writes)."""
        target = self.driver.rootfs_path(cid)
        if mnt.is_mounted(target):
            return target
        spec = self.driver.rootfs_mount(cid, [x.cache_id for x in self.chain(self._rw_parent(cid))], volatile)
        if spec is not None:
            mnt.mount(spec, target)
        return target

    def unmount_rw(self, cid: str) -> None:
        mnt.unmount(self.driver.rootfs_path(cid))  # a no-op where the driver did not mount

    def remove_rw(self, cid: str) -> None:
        self.drop_rw(cid)
        self.forget_rw(cid)

    def drop_rw(self, cid: str) -> None:
        """The writable layer's files unmounted and discarded (blocking; writes no row, so it may
        run in a worker thread); ``forget_rw`` then deletes the record."""
        self.unmount_rw(cid)
        self.driver.remove(cid)

    def forget_rw(self, cid: str) -> None:
        with transaction(self.conn):
            self.conn.execute("DELETE FROM rw_layers WHERE cid=?", (cid,))

    def changes(self, cid: str) -> list[dict[str, Any]]:
        """``docker diff`` of a container's writable layer (blocking): Kind 0 modified, 1 added,
        2 deleted, sorted by path; the driver decides how its layout is compared."""
        return self.driver.changes(cid, [x.cache_id for x in self.chain(self._rw_parent(cid))])

    def write_diff(self, cid: str, out: BinaryIO, mtime_clamp: int | None = None) -> str:
        """The writable layer as an image layer tar, deletions as ``.wh.`` entries (blocking);
        ``mtime_clamp`` caps every entry's mtime (reproducible builds). Returns the tar's diff ID,
        hashed as it is written, so a commit need not read the tar again to name it."""
        tee = _Hasher(out)
        self.driver.write_diff(cid, [x.cache_id for x in self.chain(self._rw_parent(cid))],
                               tee, mtime_clamp)  # type: ignore[arg-type]
        return "sha256:" + tee.h.hexdigest()

    def graph_data(self, top: str | None) -> dict[str, str]:
        """``GraphDriver.Data`` of an image whose top layer is ``top``."""
        return self.driver.graph_data([x.cache_id for x in self.chain(top)])

    def rw_size(self, cid: str) -> int:
        return dir_size(self.driver.rw_path(cid))


# -- checking (berth check; berthd's start-up) ----------------------------------------------------
class _Hasher:
    """A write-only stream that hashes what passes through it, into ``out`` when given."""

    def __init__(self, out: BinaryIO | None = None) -> None:
        self.h = hashlib.sha256()
        self.out = out

    def write(self, data: bytes) -> int:
        self.h.update(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)


def check(conn: sqlite3.Connection, root: str, driver: Driver, verify_data: bool = False) -> Findings:
    """Every layer's parent, directory and tar-split record; with ``verify_data``, that the layer
    still reassembles to the exact tar its diff ID names. Changes nothing (``conn`` may be read-only)."""
    f = Findings()
    if (p := schema_problem(conn, "layers", MIGRATIONS)) is not None:
        f.problem("database", p)
    layers = {row["chain_id"]: row for row in conn.execute("SELECT * FROM layers")}
    split_dir = os.path.join(root, "tarsplit")
    for cid, row in layers.items():
        if row["parent"] and row["parent"] not in layers:
            f.problem(f"layer {cid}", f"parent {row['parent']} is missing")
        path = driver.layer_path(row["cache_id"])
        split = os.path.join(split_dir, row["cache_id"] + ".gz")
        if not os.path.isdir(path):
            f.problem(f"layer {cid}", f"directory {path} is missing")
            continue
        if not os.path.exists(split):
            f.problem(f"layer {cid}", f"tar-split record {split} is missing")
            continue
        if verify_data:
            h = _Hasher()
            try:
                with open(split, "rb") as sf:
                    assemble(path, sf, h)  # type: ignore[arg-type]
            except (OSError, ValueError) as e:
                f.problem(f"layer {cid}", f"cannot be reassembled: {e}")
                continue
            got = "sha256:" + h.h.hexdigest()
            if got != row["diff_id"]:
                f.problem(f"layer {cid}", f"content changed on disk: tar is {got}, diff ID {row['diff_id']}")
    f.checked = len(layers)
    return f


def exists_in(conn: sqlite3.Connection) -> set[str]:
    """Chain IDs of the stored layers (for the checks of stores that name them)."""
    return column(conn, "SELECT chain_id FROM layers") or set()


def leftovers(conn: sqlite3.Connection, root: str, drivers: list[Driver],
              containers: set[str] | None) -> list[Leftover]:
    """Tar-split records and driver directories of no layer, writable layers of no container (in
    ``containers``, None when unknown), temporaries and trash."""
    out: list[Leftover] = []
    layers = column(conn, "SELECT cache_id FROM layers")
    rw = column(conn, "SELECT cid FROM rw_layers")
    split_dir = os.path.join(root, "tarsplit")
    for name in ls(split_dir):
        if is_temp(name):
            out.append(Leftover(os.path.join(split_dir, name), TEMP, "tar-split record being written"))
        elif layers is not None and name.removesuffix(".gz") not in layers:
            out.append(Leftover(os.path.join(split_dir, name), ORPHAN, "tar-split record of no layer"))
    for driver in drivers:
        found = driver.leftovers(layers | rw if layers is not None and rw is not None else set())
        # without both tables (a new data root) every directory would look unknown: list only the trash
        out += [x for x in found if (layers is not None and rw is not None) or x.kind == TEMP]
    if rw is not None and containers is not None:
        for cid in sorted(rw - containers):
            out.append(Leftover(f"rw_layers/{cid}", ORPHAN, "writable layer of no container (removed at start)"))
    return out
