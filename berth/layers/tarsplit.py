"""Tar-split: reproduce a layer's tar byte for byte from its extracted files.

Image layers are identified by the sha256 of their *uncompressed tar* (the diff ID), so
``docker save`` must give back the very bytes that were loaded. Like Docker's tar-split we keep
the tar's headers and padding (small, compressible) and point at the extracted files for the
contents; ``assemble`` rebuilds the original stream. ``Split`` is filled by the extractor
(``berth.layers.tarextract``) while it writes the layer.
"""

from __future__ import annotations

import gzip
import os
import posixpath
import struct
import tarfile
from typing import IO, BinaryIO, cast

from berth import safepath
from berth.gz import open_reader as gzip_reader

_COPY_BUF = 1 << 20

# record kinds
_RAW = 0
_FILE = 1


class Split:
    """Collects tar-split records: raw header/padding bytes and references to extracted files.

    Replacing a path must first copy the tar's bytes of every recorded file below it into the
    split (they are about to change on disk). ``_kids`` indexes recorded files by directory, so
    that costs what it replaces, not what was extracted before (a scan was quadratic).
    """

    def __init__(self, tar: BinaryIO) -> None:
        self.tar = tar
        self.records: list[tuple[int, object]] = []
        self.pos = 0
        self.file_index: dict[str, int] = {}
        self._kids: dict[str, set[str]] = {}  # dir rel -> child rels on the way to recorded files

    def raw_until(self, end: int) -> None:
        # raw records are (start, end) ranges of the tar, read when the split is written: a big
        # layer's headers are tens of MB, not worth holding in memory meanwhile
        if end > self.pos:
            self.records.append((_RAW, (self.pos, end)))
            self.pos = end

    def file(self, rel: str, offset: int, size: int) -> None:
        self.raw_until(offset)
        self.inline(rel)
        self.file_index[rel] = len(self.records)
        self.records.append((_FILE, (rel, size, offset)))
        self.pos = offset + size
        child = rel
        while child:
            parent = posixpath.dirname(child)
            kids = self._kids.setdefault(parent, set())
            if child in kids:
                break  # the rest of the way up is linked already
            kids.add(child)
            child = parent

    def inline(self, rel: str) -> None:
        """``rel`` is about to change on disk: keep its earlier contents in the split itself."""
        i = self.file_index.pop(rel, None)
        if i is not None:
            _r, size, offset = cast("tuple[str, int, int]", self.records[i][1])  # a _FILE record
            self.tar.seek(offset)
            self.records[i] = (_RAW, self.tar.read(size))  # the file on disk is about to change

    def inline_under(self, rel: str) -> None:
        self.inline(rel)
        stack = [rel]
        while stack:
            for child in self._kids.pop(stack.pop(), ()):
                self.inline(child)
                stack.append(child)

    def write(self, out: BinaryIO, end: int) -> None:
        self.raw_until(end)
        buf = bytearray()  # records are small: one gzip write per MB, not three per record
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz:
            for kind, val in self.records:
                if kind == _RAW:
                    if isinstance(val, tuple):
                        start, stop = val
                        self.tar.seek(start)
                        data = self.tar.read(stop - start)
                        if len(data) != stop - start:
                            raise tarfile.ReadError("unexpected end of data")
                    else:
                        data = val  # type: ignore[assignment]
                    buf += struct.pack(">BQ", _RAW, len(data))
                    buf += data
                else:
                    rel, size, _off = cast("tuple[str, int, int]", val)
                    enc = rel.encode("utf-8", "surrogateescape")
                    buf += struct.pack(">BQQ", _FILE, len(enc), size)
                    buf += enc
                if len(buf) >= _COPY_BUF:
                    gz.write(buf)
                    buf.clear()
            gz.write(buf)


def assemble(root: str, split_in: BinaryIO, out: BinaryIO) -> None:
    """Write the original tar stream from tar-split metadata and the extracted files."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _assemble(root_fd, split_in, out)
    finally:
        os.close(root_fd)


def _assemble(root_fd: int, split_in: BinaryIO, out: BinaryIO) -> None:
    with gzip_reader(split_in) as gz:
        while True:
            head = gz.read(9)
            if not head:
                return
            kind, length = struct.unpack(">BQ", head)
            if kind == _RAW:
                _copy_exact(gz, out, length)
            elif kind == _FILE:
                (size,) = struct.unpack(">Q", gz.read(8))
                rel = gz.read(length).decode("utf-8", "surrogateescape")
                # resolved inside root: even a layer whose dirs are links cannot make us read the host
                fd = safepath.open_in_root(root_fd, rel, os.O_RDONLY, follow=False)
                try:
                    _copy_fd_exact(fd, out, size, rel)
                finally:
                    os.close(fd)
            else:
                raise ValueError("corrupt tar-split metadata")


def _copy_exact(src: IO[bytes], dst: BinaryIO, n: int) -> None:
    while n:
        chunk = src.read(min(_COPY_BUF, n))
        if not chunk:
            raise ValueError("layer content is shorter than recorded; the layer store is damaged")
        dst.write(chunk)
        n -= len(chunk)


def _copy_fd_exact(fd: int, dst: BinaryIO, n: int, rel: str) -> None:
    """``n`` bytes of file ``fd`` to ``dst``, plain reads (a small file: one read, one more for EOF)."""
    while n:
        chunk = os.read(fd, min(_COPY_BUF, n))
        if not chunk:
            raise ValueError(f"{rel}: layer content is shorter than recorded; the layer store is damaged")
        dst.write(chunk)
        n -= len(chunk)
    if os.read(fd, 1):
        raise ValueError(f"{rel}: layer content is longer than recorded; the layer store is damaged")
