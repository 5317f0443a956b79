"""Image store: image records (config blob + top layer) and the reference (tag) store.

The image ID is the sha256 of the config JSON exactly as loaded, so it equals Docker's
ID for the same image.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from berth.content import CONFIG_REF, BlobNotFound, ContentStore
from berth.db import Step, migrate, schema_problem, transaction
from berth.errors import InvalidParameter, NotFound
from berth.images import reference
from berth.layers.store import chain_id
from berth.storecheck import Findings

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    top_layer TEXT,
    size INTEGER NOT NULL,
    parent TEXT NOT NULL DEFAULT '',
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS refs (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id)
);
CREATE TABLE IF NOT EXISTS repo_digests (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id)
);
"""
# Version 2: every image listed looks up its tags and digests by image ID, and deleting an image
# row makes SQLite look for rows naming it (the foreign keys): index both, and the parent column.
MIGRATIONS: list[Step] = [SCHEMA, """
CREATE INDEX IF NOT EXISTS refs_image ON refs(image_id);
CREATE INDEX IF NOT EXISTS repo_digests_image ON repo_digests(image_id);
CREATE INDEX IF NOT EXISTS images_parent ON images(parent);
"""]


class ImageNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"No such image: {name}")
        self.name = name


class AmbiguousImage(InvalidParameter):
    pass


@dataclass
class Image:
    id: str
    config: dict[str, Any]
    raw_config: bytes
    top_layer: str | None
    size: int
    parent: str = ""
    added: float = 0.0
    repo_tags: list[str] = field(default_factory=list)
    repo_digests: list[str] = field(default_factory=list)

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.get("rootfs", {}).get("diff_ids", []))

    @property
    def chain_ids(self) -> list[str]:
        out: list[str] = []
        parent = None
        for d in self.diff_ids:
            parent = chain_id(parent, d)
            out.append(parent)
        return out


class ImageStore:
    def __init__(self, conn: sqlite3.Connection, content: ContentStore) -> None:
        self.conn = conn
        self.content = content
        migrate(conn, "images", MIGRATIONS)
        self._configs: dict[str, tuple[dict[str, Any], bytes]] = {}
        self._reconcile()

    def _reconcile(self) -> None:
        """Each image keeps its config blob by a reference: make those of a data root from before the
        content store (and move its blobs in), drop those whose image a crash never recorded."""
        ids = {r[0] for r in self.conn.execute("SELECT id FROM images")}
        refs = self.content.refs(CONFIG_REF)
        for iid in sorted(ids - {r.removeprefix(CONFIG_REF) for r in refs}):
            if not self.content.adopt(iid, [CONFIG_REF + iid]):
                self.content.keep(CONFIG_REF + iid, iid)  # already in the store (or missing: check says so)
        stale = [r for r in refs if r.removeprefix(CONFIG_REF) not in ids]
        if stale:
            self.content.release(*stale)

    # -- records ---------------------------------------------------------------------
    def add(self, raw_config: bytes, size: int, parent: str = "") -> str:
        """Store a config blob and its image record; layers must already be in the layer store."""
        digest = "sha256:" + hashlib.sha256(raw_config).hexdigest()
        self.content.put(raw_config, [CONFIG_REF + digest])
        config = json.loads(raw_config)
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        top = None
        for d in diff_ids:
            top = chain_id(top, d)
        with transaction(self.conn):
            self.conn.execute(
                "INSERT OR IGNORE INTO images (id, top_layer, size, parent, added) VALUES (?,?,?,?,?)",
                (digest, top, size, parent, time.time()),
            )
        return digest

    def _row_to_image(self, row: sqlite3.Row) -> Image:
        iid = row["id"]
        cached = self._configs.get(iid)
        if cached is None:
            raw = self.content.read(iid)
            cached = (json.loads(raw), raw)
            self._configs[iid] = cached
        tags = [reference.familiar(r[0]) for r in
                self.conn.execute("SELECT name FROM refs WHERE image_id=? ORDER BY name", (iid,))]
        digests = [reference.familiar(r[0]) for r in
                   self.conn.execute("SELECT name FROM repo_digests WHERE image_id=? ORDER BY name", (iid,))]
        return Image(iid, cached[0], cached[1], row["top_layer"], row["size"], row["parent"], row["added"],
                     tags, digests)

    def get(self, image_id: str) -> Image:
        row = self.conn.execute("SELECT * FROM images WHERE id=?", (image_id,)).fetchone()
        if row is None:
            raise ImageNotFound(image_id)
        return self._row_to_image(row)

    # the annotations after this method say builtins.list: in the class body, list is this method
    def list(self) -> list[Image]:
        return [self._row_to_image(r) for r in self.conn.execute("SELECT * FROM images ORDER BY added DESC")]

    def children(self, image_id: str) -> builtins.list[str]:
        return [r[0] for r in self.conn.execute("SELECT id FROM images WHERE parent=?", (image_id,))]

    def delete(self, image_id: str) -> None:
        with transaction(self.conn):
            self.conn.execute("DELETE FROM refs WHERE image_id=?", (image_id,))
            self.conn.execute("DELETE FROM repo_digests WHERE image_id=?", (image_id,))
            self.conn.execute("DELETE FROM images WHERE id=?", (image_id,))
        self._configs.pop(image_id, None)
        self.content.release(CONFIG_REF + image_id)

    def top_layers(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT top_layer FROM images") if r[0]}

    # -- lookup by name, ID or ID prefix ---------------------------------------------------
    def resolve(self, name: str) -> Image:
        """Find an image as Docker does: reference first, then full ID, then a unique ID prefix."""
        if reference.looks_like_id(name):
            iid = name if name.startswith("sha256:") else "sha256:" + name
            return self.get(iid)
        try:
            ref = reference.parse(name)
        except reference.InvalidReference:
            ref = None
        if ref is not None:
            table = "repo_digests" if ref.digest else "refs"
            key = f"{ref.repo}@{ref.digest}" if ref.digest else str(ref)
            row = self.conn.execute(f"SELECT image_id FROM {table} WHERE name=?", (key,)).fetchone()
            if row is not None:
                return self.get(row[0])
        prefix = name[len("sha256:"):] if name.startswith("sha256:") else name
        if 0 < len(prefix) <= 64 and all(c in "0123456789abcdef" for c in prefix):
            rows = self.conn.execute("SELECT id FROM images WHERE id LIKE ?",
                                     (f"sha256:{prefix}%",)).fetchall()
            if len(rows) == 1:
                return self.get(rows[0][0])
            if len(rows) > 1:
                raise AmbiguousImage(f"multiple IDs found with provided prefix: {prefix}")
        raise ImageNotFound(name)

    # -- references --------------------------------------------------------------------
    def tag(self, ref: reference.Reference, image_id: str) -> str | None:
        """Point ``ref`` at ``image_id``; return the image it pointed at before, if other."""
        key = str(ref)
        with transaction(self.conn):
            row = self.conn.execute("SELECT image_id FROM refs WHERE name=?", (key,)).fetchone()
            self.conn.execute("INSERT OR REPLACE INTO refs VALUES (?,?)", (key, image_id))
        old = row[0] if row else None
        return old if old != image_id else None

    def untag(self, ref: reference.Reference) -> str | None:
        table = "repo_digests" if ref.digest else "refs"
        key = f"{ref.repo}@{ref.digest}" if ref.digest else str(ref)
        with transaction(self.conn):
            row = self.conn.execute(f"SELECT image_id FROM {table} WHERE name=?", (key,)).fetchone()
            self.conn.execute(f"DELETE FROM {table} WHERE name=?", (key,))
        return row[0] if row else None

    def refs_of(self, image_id: str) -> builtins.list[str]:
        """Full normalised tag names pointing at ``image_id``."""
        return [r[0] for r in self.conn.execute("SELECT name FROM refs WHERE image_id=?", (image_id,))]

    def add_repo_digest(self, repo: str, digest: str, image_id: str) -> None:
        with transaction(self.conn):
            self.conn.execute("INSERT OR REPLACE INTO repo_digests VALUES (?,?)", (f"{repo}@{digest}", image_id))


# -- checking (berth check; berthd's start-up) ----------------------------------------------------
def check(conn: sqlite3.Connection, content: ContentStore, layers: set[str]) -> Findings:
    """Every image's config blob against its ID, its top layer (``layers``: the stored chain IDs),
    every tag's image. Changes nothing (``conn`` may be read-only)."""
    f = Findings()
    if (p := schema_problem(conn, "images", MIGRATIONS)) is not None:
        f.problem("database", p)
    images = [(row[0], row[1]) for row in conn.execute("SELECT id, top_layer FROM images")]
    for iid, top in images:
        try:
            if not content.verify(iid):
                f.problem(f"image {iid}", "config blob does not match the image ID")
        except BlobNotFound:
            f.problem(f"image {iid}", f"config blob {content.path(iid)} is missing")
        if top and top not in layers:
            f.problem(f"image {iid}", f"top layer {top} is missing")
    ids = {iid for iid, _ in images}
    for name, iid in conn.execute("SELECT name, image_id FROM refs"):
        if iid not in ids:
            f.problem(f"tag {name}", f"points at missing image {iid}")
    f.checked = len(images)
    return f

