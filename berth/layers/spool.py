"""A file written by one thread while others read it: a layer tar that is still being
decompressed, extracted as it arrives.

The extractor needs a seekable tar (tarfile seeks to each entry's data; tar-split reads header
ranges again when it writes its record), so the decompressed stream goes to a scratch file, as
before, and readers of that file wait for the bytes they ask for instead of seeing a short read.
A failure on the writing side (a dropped connection, a digest mismatch) reaches every reader as
``SpoolAborted``, so the extractor stops and its caller discards what it made.
"""

from __future__ import annotations

import io
import os
import threading
from typing import Any, BinaryIO

_BUF = 1 << 20


class SpoolAborted(Exception):
    """The writer gave up; what was read so far must not be kept."""


class Spool:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._cond = threading.Condition()
        self.size = 0  # bytes written and readable
        self.done = False
        self.error: BaseException | None = None

    # -- writer ----------------------------------------------------------------------
    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        pos = self.size
        while view:
            n = os.pwrite(self.fd, view, pos)
            view = view[n:]
            pos += n
        with self._cond:
            if self.error is not None:
                raise SpoolAborted(str(self.error))
            self.size = pos
            self._cond.notify_all()

    def finish(self) -> None:
        with self._cond:
            self.done = True
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        """Wake every reader with ``SpoolAborted`` (idempotent; the first error is kept)."""
        with self._cond:
            if self.error is None:
                self.error = error
            self._cond.notify_all()

    # -- readers ---------------------------------------------------------------------
    def wait_readable(self, end: int) -> int:
        """Block until ``end`` bytes exist or the writer finished; return how many exist."""
        with self._cond:
            while self.error is None and not self.done and self.size < end:
                self._cond.wait()
            if self.error is not None:
                raise SpoolAborted(str(self.error))
            return self.size

    def final_size(self) -> int:
        """The whole file's size, once the writer finished (blocks until then)."""
        with self._cond:
            while self.error is None and not self.done:
                self._cond.wait()
            if self.error is not None:
                raise SpoolAborted(str(self.error))
            return self.size

    def reader(self) -> BinaryIO:
        return io.BufferedReader(_Follower(self), _BUF)

    def close(self) -> None:
        """Close and delete the file (readers must be closed first)."""
        os.close(self.fd)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class _Follower(io.RawIOBase):
    """A reader of a ``Spool``: a read past what was written waits for the writer."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 2:
            pos += self.spool.final_size()
        elif whence == 1:
            pos += self.pos
        self.pos = pos
        return pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, b: Any) -> int:
        want = len(b)
        if not want:
            return 0
        have = self.spool.wait_readable(self.pos + 1)
        n = min(want, have - self.pos)
        if n <= 0:
            return 0  # the writer finished: end of file
        got = os.preadv(self.spool.fd, [memoryview(b)[:n]], self.pos)
        self.pos += got
        return got
