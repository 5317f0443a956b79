"""berthd's one content store: immutable blobs named by their sha256, and the references that keep them.

As containerd's content store, it has three faces. The *provider* reads (``open``, ``read``,
``info``, ``walk``); the *ingester* writes (``writer()`` streams a blob to a temporary and commits
it only when its size and digest are what the caller expected, see :mod:`berth.content.writer`);
the *manager* keeps and removes (references, ``delete``, ``collect``).

A reference is a name that says why a blob is kept, owned by the store that made it:
``image.config/<image ID>`` (the image store), ``layer.gzip/<diff ID>`` (push's compressed form of
a layer; deterministic, so it does not depend on the registry), ``lease/<token>`` (a blob in use
for the length of one operation, as a pull's download until it is extracted). A blob no reference
names is garbage: ``collect`` removes it while berthd runs, and at start-up ``leftovers()`` lists
it with the crash's other leftovers. Blobs are files; the references are the ``content_refs``
table, migrated through :func:`berth.db.migrate` as store ``content``.

Layout (below the data root's ``content/``): ``blobs/sha256/<hex>`` and ``ingest/.tmp-…``.
Data roots from before this store kept image configs in ``image/blobs/sha256`` and push's gzip
layers in ``distribution/blobs``: the store reads both (``legacy``), and the image store and the
distribution service move their blobs in when they open (``adopt``), references first.

Threads: reads and writers' ``write``/``finish`` may run anywhere; whatever touches the
references (``commit``, ``keep``, ``release``, ``collect``) runs on the thread that owns the
database connection (berthd's event loop), which is also what keeps a commit and a collection apart.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from berth.content.writer import DigestMismatch, Writer, install
from berth.db import Step, migrate, schema_problem, transaction
from berth.errors import NotFound
from berth.fsutil import atomic_write
from berth.storecheck import ORPHAN, TEMP, Findings, Leftover, column, is_temp, ls

__all__ = ["BlobNotFound", "ContentStore", "DigestMismatch", "Info", "Writer"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS content_refs (
    ref TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS content_refs_digest ON content_refs(digest);
"""
MIGRATIONS: list[Step] = [SCHEMA]
CONFIG_REF = "image.config/"  # + image ID: the image store's config blobs
GZIP_REF = "layer.gzip/"  # + diff ID: a layer's gzip form, kept for pushes
LEASE_REF = "lease/"  # + a token: a blob in use for one operation (a pull's download), never past a restart
HEX = frozenset("0123456789abcdef")


class BlobNotFound(NotFound):
    def __init__(self, digest: str) -> None:
        super().__init__(f"blob {digest} not found")
        self.digest = digest


@dataclass(frozen=True)
class Info:
    digest: str
    size: int
    created: float  # when it was committed (the file's mtime)
    refs: list[str] = field(default_factory=list)


def at(conn: sqlite3.Connection, data_root: str, create: bool = True) -> ContentStore:
    """The data root's content store, with the directories older berths kept blobs in."""
    j = os.path.join
    return ContentStore(conn, j(data_root, "content"),
                        [j(data_root, "image", "blobs", "sha256"), j(data_root, "distribution", "blobs")], create)


def check_digest(digest: str) -> str:
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or len(hexd) != 64 or not HEX.issuperset(hexd):
        raise ValueError(f"invalid digest {digest!r}")
    return hexd


class ContentStore:
    def __init__(self, conn: sqlite3.Connection, root: str, legacy: Iterable[str] = (), create: bool = True) -> None:
        """``root``: the data root's ``content/``; ``legacy``: older blob directories read as well.
        ``create=False``: only look (``berth check``; ``conn`` may be read-only)."""
        self.conn = conn
        self.root = root
        self.blobs = os.path.join(root, "blobs", "sha256")
        self.ingest_dir = os.path.join(root, "ingest")
        self.legacy = [d for d in legacy]
        if create:
            os.makedirs(self.blobs, exist_ok=True)
            os.makedirs(self.ingest_dir, exist_ok=True)
            migrate(conn, "content", MIGRATIONS)
            self.release(*self.refs(LEASE_REF))  # operations of an earlier run: none is still going

    # -- provider --------------------------------------------------------------------------------
    def path(self, digest: str) -> str:
        """Where the blob lives: its place in this store, or in a legacy directory not yet adopted."""
        hexd = check_digest(digest)
        p = os.path.join(self.blobs, hexd)
        if self.legacy and not os.path.exists(p):
            for d in self.legacy:
                if os.path.exists(os.path.join(d, hexd)):
                    return os.path.join(d, hexd)
        return p

    def exists(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def open(self, digest: str, offset: int = 0) -> BinaryIO:
        try:
            f = open(self.path(digest), "rb")
        except FileNotFoundError as e:
            raise BlobNotFound(digest) from e
        if offset:
            f.seek(offset)
        return f

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def size(self, digest: str) -> int | None:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            return None

    def info(self, digest: str) -> Info:
        try:
            st = os.stat(self.path(digest))
        except FileNotFoundError as e:
            raise BlobNotFound(digest) from e
        refs = [r[0] for r in self.conn.execute("SELECT ref FROM content_refs WHERE digest=? ORDER BY ref",
                                                (digest,))]
        return Info(digest, st.st_size, st.st_mtime, refs)

    def walk(self) -> Iterator[str]:
        """Digests of every committed blob (in this store; temporaries left out)."""
        for name in ls(self.blobs):
            if not is_temp(name) and len(name) == 64 and HEX.issuperset(name):
                yield "sha256:" + name

    def verify(self, digest: str) -> bool:
        """Whether the blob still hashes to its name (BlobNotFound when it is gone)."""
        h = hashlib.sha256()
        with self.open(digest) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return "sha256:" + h.hexdigest() == digest

    # -- ingester -------------------------------------------------------------------------------
    def writer(self, expected: str | None = None, size: int | None = None) -> Writer:
        """A streaming writer; ``expected``/``size``, when given, are verified at commit."""
        return Writer(self, expected, size)

    def put(self, data: bytes, refs: Iterable[str] = (), expected: str | None = None) -> str:
        """Store a small blob whole (written only when absent; the references are recorded either way)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if expected is not None and expected != digest:
            raise DigestMismatch(f"digest mismatch: expected {expected}, got {digest}")
        target = os.path.join(self.blobs, check_digest(digest))
        if not os.path.exists(target):
            atomic_write(target, data)
        self._record(list(refs), digest)
        return digest

    def _install(self, tmp: str, digest: str, refs: list[str]) -> None:
        install(tmp, os.path.join(self.blobs, check_digest(digest)))
        self._record(refs, digest)

    # -- manager: references ----------------------------------------------------------------------
    def _record(self, refs: list[str], digest: str) -> None:
        if not refs:
            return
        now = time.time()
        with transaction(self.conn):
            self.conn.executemany("INSERT OR REPLACE INTO content_refs VALUES (?,?,?)",
                                  [(r, digest, now) for r in refs])

    def keep(self, ref: str, digest: str) -> None:
        """Point ``ref`` at a stored blob (replacing what it named before; that blob is not collected)."""
        check_digest(digest)
        self._record([ref], digest)

    def ref(self, ref: str) -> str | None:
        """The digest ``ref`` names, or None."""
        row = self.conn.execute("SELECT digest FROM content_refs WHERE ref=?", (ref,)).fetchone()
        return row[0] if row else None

    def refs(self, prefix: str = "") -> dict[str, str]:
        """References starting with ``prefix`` and the digests they name."""
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return dict(self.conn.execute("SELECT ref, digest FROM content_refs WHERE ref LIKE ? ESCAPE '\\'",
                                      (like,)).fetchall())

    def refs_of(self, digest: str) -> list[str]:
        """The references that keep ``digest``."""
        return [r[0] for r in self.conn.execute("SELECT ref FROM content_refs WHERE digest=? ORDER BY ref",
                                                (digest,))]

    def release(self, *refs: str) -> list[str]:
        """Drop references; blobs nothing else keeps are removed. Returns the removed digests."""
        digests = {d for r in refs if (d := self.ref(r)) is not None}
        with transaction(self.conn):
            self.conn.executemany("DELETE FROM content_refs WHERE ref=?", [(r,) for r in refs])
        return self.collect(digests)

    # -- manager: removal -------------------------------------------------------------------------------
    def delete(self, digest: str) -> None:
        """Remove a blob and every reference to it."""
        with transaction(self.conn):
            self.conn.execute("DELETE FROM content_refs WHERE digest=?", (digest,))
        self._unlink(digest)

    def _unlink(self, digest: str) -> None:
        try:
            os.unlink(os.path.join(self.blobs, check_digest(digest)))
        except FileNotFoundError:
            pass

    def collect(self, candidates: Iterable[str] | None = None) -> list[str]:
        """Garbage collection: remove the blobs (``candidates``, or all) that no reference names."""
        kept = {r[0] for r in self.conn.execute("SELECT DISTINCT digest FROM content_refs")}
        gone = [d for d in (self.walk() if candidates is None else candidates) if d not in kept]
        for d in gone:
            self._unlink(d)
        return gone

    # -- older data roots ------------------------------------------------------------------------------
    def adopt(self, digest: str, refs: Iterable[str]) -> bool:
        """Bring a blob stored in a legacy directory into the store, kept by ``refs`` (recorded
        first, so a crash half-way leaves a reference and a blob where ``path`` still finds it).
        False when no legacy directory holds it."""
        hexd = check_digest(digest)
        target = os.path.join(self.blobs, hexd)
        for d in self.legacy:
            old = os.path.join(d, hexd)
            if os.path.exists(old):
                self._record(list(refs), digest)
                if os.path.exists(target):
                    os.unlink(old)
                else:
                    os.rename(old, target)  # the same filesystem: all below the data root
                return True
        return False

    def drop_legacy(self) -> None:
        """Once every store has adopted its blobs: what is left in the legacy directories nobody keeps."""
        for d in self.legacy:
            for name in ls(d):
                os.unlink(os.path.join(d, name))
            with contextlib.suppress(FileNotFoundError, OSError):  # OSError: not empty (not ours)
                os.removedirs(d)  # and its parents while they are empty (image/blobs/, image/)

    # -- checking (berth check; berthd's start-up) -------------------------------------------------------
    def check(self, verify_data: bool = False) -> Findings:
        """References whose blob is gone; with ``verify_data``, blobs that no longer hash to their names.
        Changes nothing."""
        f = Findings()
        if (p := schema_problem(self.conn, "content", MIGRATIONS)) is not None:
            f.problem("database", p)
        try:
            rows = self.conn.execute("SELECT ref, digest FROM content_refs ORDER BY ref").fetchall()
        except sqlite3.OperationalError:
            rows = []  # a data root from before this store: the image store checks its configs
        for ref, digest in rows:
            if not self.exists(digest):
                f.problem(f"content {ref}", f"blob {digest} is missing")
        blobs = list(self.walk())
        if verify_data:  # what nothing keeps is a leftover, not damage: only kept blobs are read
            for d in sorted({d for _r, d in rows if self.exists(d)}):
                if not self.verify(d):
                    f.problem(f"blob {d}", "content does not match its digest")
        f.checked = len(blobs)
        return f

    def leftovers(self) -> list[Leftover]:
        """Writes a crash cut short (``ingest/``, and temporaries of the legacy directories), and
        blobs no reference keeps (what ``collect`` would remove)."""
        out = [Leftover(os.path.join(self.ingest_dir, n), TEMP, "blob being written") for n in ls(self.ingest_dir)]
        for d in (self.blobs, *self.legacy):
            out += [Leftover(os.path.join(d, n), TEMP, "interrupted blob write") for n in ls(d) if is_temp(n)]
        # a lease dies with the run that took it (berthd drops what is left of them when the store opens)
        kept = column(self.conn, f"SELECT digest FROM content_refs WHERE ref NOT LIKE '{LEASE_REF}%'")
        if kept is not None:
            out += [Leftover(os.path.join(self.blobs, d.removeprefix("sha256:")), ORPHAN, "blob no reference keeps")
                    for d in self.walk() if d not in kept]
        return out
