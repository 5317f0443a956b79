"""Pull, push, login and distribution inspect, as the API calls them (``berth.api.backends``).

The pull itself is ``berth.distribution.pull``, the push ``berth.distribution.push``; this keeps
what they share: the record of which registry repositories have which blobs (for push's
cross-repository mounts) and the thread pool push compresses on.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp

from berth.content import GZIP_REF, ContentStore
from berth.db import Step, migrate, schema_version, transaction
from berth.distribution.client import (
    Credentials,
    Registry,
    RegistryConfig,
    RegistryError,
    Unauthorized,
    new_session,
    parse_manifest,
)
from berth.distribution.pipeline import limit_malloc_arenas
from berth.distribution.progress import Progress
from berth.distribution.pull import Puller
from berth.distribution.push import Pusher
from berth.errors import BerthError
from berth.images import reference
from berth.images.service import ImageService

SCHEMA = """
CREATE TABLE IF NOT EXISTS compressed_layers (
    diff_id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS blob_repos (
    digest TEXT NOT NULL,
    registry TEXT NOT NULL,
    repo TEXT NOT NULL,
    PRIMARY KEY (digest, registry, repo)
);
"""
# Version 2: push's compressed layers live in the content store, kept by ``layer.gzip/<diff ID>``
# references (moved there by ``_adopt_compressed`` before this step runs); their table goes.
MIGRATIONS: list[Step] = [SCHEMA, "DROP TABLE IF EXISTS compressed_layers;"]


class DistributionService:
    def __init__(self, conn: sqlite3.Connection, content: ContentStore, images: ImageService,
                 config: RegistryConfig) -> None:
        self.conn = conn
        self.content = content
        if schema_version(conn, "distribution") < len(MIGRATIONS):
            migrate(conn, "distribution", MIGRATIONS[:1])
            self._adopt_compressed()
        migrate(conn, "distribution", MIGRATIONS)
        self.images = images
        self.config = config
        self.pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="gzip")
        limit_malloc_arenas()  # pulls' threads would each keep an arena's worth of freed buffers
        self._puller = Puller(images, config, self._seen)
        self._pusher = Pusher(content, images, config, self.pool, self._seen, self._repos_with)

    def _adopt_compressed(self) -> None:
        """An older data root's compressed layers (rows, and files in distribution/blobs): into the
        content store, references first, so a crash half-way repeats this on the next start."""
        for diff_id, digest in self.conn.execute("SELECT diff_id, digest FROM compressed_layers").fetchall():
            if not self.content.adopt(digest, [GZIP_REF + diff_id]) and self.content.exists(digest):
                self.content.keep(GZIP_REF + diff_id, digest)

    # -- login ------------------------------------------------------------------------------------------
    async def login(self, body: dict[str, Any]) -> dict[str, str]:
        server = (body.get("serveraddress") or "docker.io").removeprefix("https://").removeprefix("http://")
        server = server.split("/", 1)[0]
        if server in ("index.docker.io", "registry-1.docker.io"):
            server = "docker.io"
        creds = Credentials(body.get("username") or "", body.get("password") or "")
        base = self.config.endpoint(server)
        async with new_session() as s:
            reg = Registry(s, base, "", creds)
            try:
                await reg.ping()
            except Unauthorized as e:
                raise LoginFailed(f"login attempt to {base}/v2/ failed with status: 401 Unauthorized") from e
            except aiohttp.ClientError as e:
                raise RegistryError(f"Get \"{base}/v2/\": {e}") from e
        return {"Status": "Login Succeeded", "IdentityToken": ""}

    # -- pull and push ---------------------------------------------------------------------------------------
    def pull(self, image: str, tag: str, creds: Credentials) -> AsyncIterator[Progress]:
        return self._puller.pull(image, tag, creds)

    def push(self, name: str, tag: str, creds: Credentials) -> AsyncIterator[Progress]:
        return self._pusher.push(name, tag, creds)

    def _seen(self, digest: str, reg: Registry) -> None:
        """Remember that ``reg.repo`` has this blob, for cross-repository mounts later."""
        with transaction(self.conn):
            self.conn.execute("INSERT OR IGNORE INTO blob_repos VALUES (?,?,?)", (digest, reg.base, reg.repo))

    def _repos_with(self, digest: str, reg: Registry) -> list[str]:
        rows = self.conn.execute("SELECT repo FROM blob_repos WHERE digest=? AND registry=? AND repo!=?",
                                 (digest, reg.base, reg.repo)).fetchall()
        return [r[0] for r in rows]

    # -- distribution inspect -----------------------------------------------------------------------------------
    async def inspect(self, name: str, creds: Credentials) -> dict[str, Any]:
        ref = reference.parse(name)
        async with new_session() as s:
            reg = Registry(s, self.config.endpoint(ref.domain), ref.path, creds, "pull")
            raw, mt, _h = await reg.get_manifest(ref.digest or ref.tag or "latest")
        m = parse_manifest(raw)
        platforms = [c.get("platform") for c in m.get("manifests", []) if c.get("platform")]
        if not platforms:
            platforms = [{"architecture": "amd64", "os": "linux"}]
        return {"Descriptor": {"mediaType": mt or m.get("mediaType", ""),
                               "digest": "sha256:" + hashlib.sha256(raw).hexdigest(), "size": len(raw)},
                "Platforms": platforms}


class LoginFailed(BerthError):
    status = 401
