"""The ingester's writer: stream a blob into a temporary file, verify it, then make it content.

A writer appends to its own ``ingest/.tmp-…`` file (so any number of writers may write the same
digest at once), hashing as it goes. ``finish()`` flushes and fsyncs it and checks the size and
digest the caller expected; ``commit()`` renames it to ``blobs/sha256/<hex>`` (or drops it when an
equal blob is already there) and records the references that keep it. Anything that goes wrong
before the rename, a wrong digest or size included, removes the temporary and stores nothing; a
crash leaves only the temporary, which ``leftovers()`` lists and berthd removes when it starts.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from typing import TYPE_CHECKING

from berth.errors import InvalidParameter
from berth.fsutil import fsync_dir

if TYPE_CHECKING:
    from berth.content.store import ContentStore


class DigestMismatch(InvalidParameter):
    """What was written is not what the caller said it would be (digest or size)."""


class Writer:
    def __init__(self, store: ContentStore, expected: str | None = None, size: int | None = None) -> None:
        self.store = store
        self.expected = expected
        self.expected_size = size
        algo = (expected or "sha256:").partition(":")[0]
        if algo not in ("sha256", "sha512"):
            raise InvalidParameter(f"unsupported digest {expected}")
        self._h = hashlib.new(algo)
        fd, self.path = tempfile.mkstemp(dir=store.ingest_dir, prefix=".tmp-")
        self._f = os.fdopen(fd, "wb")
        self.offset = 0
        self.digest: str | None = None  # set by finish()
        self._done = False

    def write(self, data: bytes | memoryview) -> int:
        self._f.write(data)
        self._h.update(data)
        self.offset += len(data)
        return len(data)

    def finish(self) -> str:
        """Flush, fsync and verify (blocking: run it in a thread for a large blob); returns the digest.
        On a mismatch the temporary is gone and DigestMismatch says what differed."""
        if self.digest is not None:
            return self.digest
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            got = f"{self._h.name}:{self._h.hexdigest()}"
            if self.expected_size is not None and self.offset != self.expected_size:
                raise DigestMismatch(f"size mismatch: expected {self.expected_size} bytes, got {self.offset}")
            if self.expected is not None and got != self.expected:
                raise DigestMismatch(f"digest mismatch: expected {self.expected}, got {got}")
            if self._h.name != "sha256":  # stored by sha256 whatever the caller verified with
                got = self._sha256_of_file()
        except BaseException:
            self.abort()
            raise
        self.digest = got
        return got

    def _sha256_of_file(self) -> str:
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return "sha256:" + h.hexdigest()

    def commit(self, refs: Iterable[str] = ()) -> str:
        """Make the blob content, kept by ``refs`` (recorded in the same step, so no collection can
        fall between the rename and the references). Without refs the blob is garbage the next time
        the store collects: pass them here, not afterwards."""
        digest = self.finish()
        try:
            self.store._install(self.path, digest, list(refs))
        except BaseException:
            self.abort()
            raise
        self._done = True
        return digest

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        if not self._f.closed:
            self._f.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.abort()  # committed: nothing to do; otherwise (an error, or no commit) nothing is kept


def install(tmp: str, target: str) -> None:
    """Rename a verified temporary into place; an equal blob already there wins (content is immutable)."""
    if os.path.exists(target):
        os.unlink(tmp)
        return
    os.rename(tmp, target)
    fsync_dir(os.path.dirname(target))
