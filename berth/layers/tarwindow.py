"""A range of a file read as a file of its own: a layer tar that lies inside an image archive,
extracted and reassembled-from without being copied out first."""

from __future__ import annotations

import io
import os
from typing import Any, BinaryIO

_BUF = 1 << 20


class Window(io.RawIOBase):
    """``size`` bytes of a file from ``offset``, as a file of their own: a layer inside an archive."""

    def __init__(self, path: str, offset: int, size: int) -> None:
        self.f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed with the window
        self.base = offset
        self.size = size
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else self.pos + pos if whence == 1 else self.size + pos
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, b: Any) -> int:
        n = max(0, min(len(b), self.size - self.pos))
        got = os.preadv(self.f.fileno(), [memoryview(b)[:n]], self.base + self.pos) if n else 0
        self.pos += got
        return got

    def close(self) -> None:
        self.f.close()
        super().close()


def open_range(tar_path: str, offset: int, size: int | None) -> BinaryIO:
    """``tar_path`` opened for reading, or only its ``size`` bytes from ``offset`` when given."""
    if size is None:
        return open(tar_path, "rb")  # noqa: SIM115 - the caller closes it
    return io.BufferedReader(Window(tar_path, offset, size), _BUF)
