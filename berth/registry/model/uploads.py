"""Blob upload sessions: the storage side of ``/v2/<name>/blobs/uploads/...``.

A session is ``_uploads/<id>/`` with a ``data`` file (bytes received so far) and a ``state`` file
(the repository it belongs to). While the server runs, each live session keeps a running sha256 in
memory, so completing an upload never re-reads the data; bodies are buffered into ~1 MiB pieces that a
worker thread appends and hashes (hashlib and write() release the GIL), keeping the event loop free.
After a restart the hash is rebuilt from the data file on first use. The in-memory offset is the truth:
a failed request's bytes are cut off the file again, so a restarted server sees the same offset.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from typing import Any

from berth.registry.model import blobs, layout
from berth.registry.model.digests import Digest, new_hasher
from berth.registry.model.errors import RegistryError, digest_invalid, upload_unknown
from berth.registry.model.housekeeping import ExpiryReport, expire_uploads
from berth.registry.model.storage import Storage

FLUSH = 1024 * 1024
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(eq=False)
class UploadSession:
    id: str
    name: str
    offset: int = 0
    hasher: Any = None  # sha256 over data[:offset]; None means "rebuild from the file"
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    gone: bool = False  # finished or cancelled while another request waited for the lock


def _hash_prefix(storage: Storage, key: str, algorithm: str, length: int) -> Any:
    h = new_hasher(algorithm)
    with storage.reader(key) as f:
        left = length
        while left > 0:
            chunk = f.read(min(FLUSH, left))
            if not chunk:
                raise RegistryError("BLOB_UPLOAD_INVALID", "upload data is shorter than recorded")
            h.update(chunk)
            left -= len(chunk)
    return h


class UploadSessions:
    """The live sessions of one registry root."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._live: dict[str, UploadSession] = {}

    # -- lifecycle --

    async def create(self, name: str) -> UploadSession:
        sid = str(uuid.uuid4())
        state = json.dumps({"name": name, "started": time.time()}).encode()
        await asyncio.to_thread(self._create_files, sid, state)
        s = UploadSession(sid, name, 0, new_hasher("sha256"))
        self._live[sid] = s
        return s

    def _create_files(self, sid: str, state: bytes) -> None:
        with self.storage.writer(layout.upload_data(sid)):
            pass
        self.storage.put(layout.upload_state(sid), state)

    async def get(self, sid: str, name: str) -> UploadSession:
        if not _SESSION_ID.match(sid):
            raise upload_unknown(sid)
        s = self._live.get(sid)
        if s is None:
            loaded = await asyncio.to_thread(self._load, sid)
            if loaded is None:
                raise upload_unknown(sid)
            s = self._live.setdefault(sid, UploadSession(sid, loaded[0], loaded[1]))
        if s.name != name or s.gone:
            raise upload_unknown(sid)
        return s

    def _load(self, sid: str) -> tuple[str, int] | None:
        # A session from before a restart: trust the data file's length, rehash lazily.
        try:
            state = json.loads(self.storage.get(layout.upload_state(sid)))
        except (FileNotFoundError, ValueError):
            return None
        st = self.storage.stat(layout.upload_data(sid))
        if st is None or not isinstance(state, dict) or not isinstance(state.get("name"), str):
            return None
        return state["name"], st.size

    async def discard(self, s: UploadSession) -> None:
        s.gone = True
        self._live.pop(s.id, None)
        await asyncio.to_thread(self.storage.delete, layout.upload_dir(s.id))

    async def expire(self, max_age: float) -> ExpiryReport:
        """Remove sessions idle longer than ``max_age`` seconds, except those a request holds now."""

        def busy(sid: str) -> bool:
            s = self._live.get(sid)
            return s is not None and s.lock.locked()

        report = await asyncio.to_thread(expire_uploads, self.storage, max_age, busy=busy)
        for sid in report.uploads_removed:
            s = self._live.pop(sid, None)
            if s is not None:
                s.gone = True
        return report

    # -- data --

    async def _ensure_hasher(self, s: UploadSession) -> Any:
        if s.hasher is None:
            s.hasher = await asyncio.to_thread(_hash_prefix, self.storage, layout.upload_data(s.id), "sha256",
                                               s.offset)
        return s.hasher

    async def append(self, s: UploadSession, content: AsyncIterable[bytes], expected: int | None) -> int:
        """Stream a request body onto the session; on any failure the session is as it was before."""
        hasher = await self._ensure_hasher(s)
        before = hasher.copy()
        start = s.offset
        w = await asyncio.to_thread(self.storage.writer, layout.upload_data(s.id))
        received = 0

        def write(data: bytearray) -> None:
            w.write(data)
            hasher.update(data)

        try:
            if w.size != start:
                await asyncio.to_thread(w.truncate, start)  # leftovers of an earlier failed request
            buf = bytearray()
            async for chunk in content:
                buf += chunk
                if len(buf) >= FLUSH:
                    data, buf = buf, bytearray()
                    await asyncio.to_thread(write, data)
                    received += len(data)
            if buf:
                await asyncio.to_thread(write, buf)
                received += len(buf)
            if expected is not None and received != expected:
                raise RegistryError("SIZE_INVALID", detail={"expected": expected, "received": received})
        except BaseException:
            s.hasher = before
            # Cut what this request wrote so the file matches the offset, even for a restarted server.
            # ftruncate is a metadata update; done inline because awaiting is unsafe while cancelling.
            w.truncate(start)
            raise
        finally:
            w.close()
        s.offset = start + received
        return received

    async def digest(self, s: UploadSession, algorithm: str) -> Digest:
        if algorithm == "sha256":
            h = await self._ensure_hasher(s)
            return Digest("sha256", h.copy().hexdigest())
        # Other algorithms are rare (sha512); hash the file once, off the loop.
        h = await asyncio.to_thread(_hash_prefix, self.storage, layout.upload_data(s.id), algorithm, s.offset)
        return Digest(algorithm, h.hexdigest())

    async def finish(self, s: UploadSession, wanted: list[Digest]) -> Digest:
        """Verify every requested digest, then commit. A mismatch fails (and drops) the upload."""
        for d in wanted:
            actual = await self.digest(s, d.algorithm)
            if actual != d:
                await self.discard(s)
                raise digest_invalid(str(d), f"provided digest did not match uploaded content (got {actual})")
        d = wanted[0]
        await asyncio.to_thread(self._commit, s, d)
        s.gone = True
        self._live.pop(s.id, None)
        return d

    def _commit(self, s: UploadSession, d: Digest) -> None:
        data = layout.upload_data(s.id)
        with self.storage.writer(data) as w:
            if w.size != s.offset:
                w.truncate(s.offset)
        blobs.commit(self.storage, data, s.name, d)
        self.storage.delete(layout.upload_dir(s.id))
