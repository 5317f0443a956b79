"""ADD of a local tar: unpacking it into the plan of what a COPY/ADD writes.

ADD unpacks a local tar (plain, gzip, bzip2, xz, zstd) into its destination, where COPY copies the file.
This module decompresses such a source into a private spool file, hashing it for the build cache, and
reads the spool's members as CopyEntry records that point back into it (no member is extracted here: the
plan's tar writer copies them from the spool). It is apart from berth/build/copysrc.py, which walks
source trees and decides where each source goes, because an archive's members are untrusted names, not
paths in a tree: they get their own checks (nothing climbs out of the destination, nothing goes through
a symlink the archive itself made), and the decompression and tar parsing stay out of the tree walker.

Blocking; called by copysrc's planner in its worker thread.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from typing import BinaryIO

from berth import safepath
from berth.build.context import decompressor, tar_header_valid
from berth.build.copyplan import O_FILE, CopyEntry, CopyError

_BUF = 1 << 20


def spool_archive(root_fd: int, rel: str, orig: str, cmd: str, tmpdir: str | None) -> tuple[str, str] | None:
    """Decompress the source at `rel` (under `root_fd`; written `orig`) to a private file in `tmpdir` if it is
    a tar (as dockerd's isArchivePath): (path, sha256 of the tar), else None. The caller owns the file."""
    try:
        fd = safepath.openat2(root_fd, rel, O_FILE)
    except OSError as e:
        raise CopyError(f"{cmd} failed: open {orig}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as raw:
        head = raw.read(6)
        raw.seek(0)
        try:
            dec = decompressor(head, raw)
            reader: BinaryIO = dec[1] if dec is not None else raw  # type: ignore[assignment]
            first = _read_full(reader, 512)
        except Exception:  # a corrupt stream is just not an archive, as Docker decides
            return None
        if not tar_header_valid(first):
            return None
        out_fd, path = tempfile.mkstemp(prefix="add-", suffix=".tar", dir=tmpdir)
        h = hashlib.sha256()
        try:
            with os.fdopen(out_fd, "wb") as out:
                if dec is None:
                    raw.seek(0)
                else:
                    out.write(first)
                    h.update(first)
                while True:
                    chunk = reader.read(_BUF)
                    if not chunk:
                        break
                    h.update(chunk)
                    out.write(chunk)
        except Exception as e:
            os.unlink(path)
            raise CopyError(f"{cmd} failed: reading archive {orig}: {e}") from None
    return path, h.hexdigest()


def archive_entries(path: str, index: int, base: str, cmd: str, tick: Callable[[], None]) -> Iterator[CopyEntry]:
    """The entries the (uncompressed) tar at `path`, the plan's archive number `index`, writes under `base`
    (the destination, relative to "/"). Refuses members that climb out of it or go through one of its own
    symlinks; `tick` is called once per member (the planner's entry bound)."""
    symlinks: set[str] = set()
    try:
        with tarfile.open(path, "r:") as tf:
            while (m := tf.next()) is not None:
                tick()
                rel = clean_member(m.name)
                if rel is None:
                    raise CopyError(f"{cmd} failed: invalid archive entry {m.name!r}: "
                                    "path escapes the destination")
                tf.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every header otherwise
                if rel == "":
                    continue
                parent = posixpath.dirname(rel)
                while parent:
                    if parent in symlinks:
                        raise CopyError(f"{cmd} failed: invalid archive entry {m.name!r}: "
                                        "path goes through a symlink")
                    parent = posixpath.dirname(parent)
                name = posixpath.join(base, rel) if base else rel
                mtime = int(m.mtime) * 1_000_000_000
                mode = m.mode & 0o7777
                if m.isdir():
                    yield CopyEntry(name, "dir", mode, m.uid, m.gid, mtime)
                elif m.isreg():
                    yield CopyEntry(name, "file", mode, m.uid, m.gid, mtime, size=m.size,
                                    member=(index, m.offset_data, m.size))
                elif m.issym():
                    symlinks.add(rel)
                    yield CopyEntry(name, "symlink", 0o777, m.uid, m.gid, mtime, linkname=m.linkname)
                elif m.islnk():
                    target = clean_member(m.linkname)
                    if target is None or target == "":
                        raise CopyError(f"{cmd} failed: invalid archive entry {m.name!r}: "
                                        "hardlink escapes the destination")
                    yield CopyEntry(name, "hardlink", mode, m.uid, m.gid, mtime,
                                    linkname=posixpath.join(base, target) if base else target)
                elif m.isfifo() or m.ischr() or m.isblk():
                    kind = "fifo" if m.isfifo() else ("char" if m.ischr() else "block")
                    yield CopyEntry(name, kind, mode, m.uid, m.gid, mtime, rdev=(m.devmajor, m.devminor))
    except tarfile.TarError as e:
        raise CopyError(f"{cmd} failed: invalid archive: {e}") from None


def _read_full(reader: BinaryIO, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = reader.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def clean_member(name: str) -> str | None:
    """An archive entry name inside the destination, or None when it climbs out."""
    stripped = name.lstrip("/")
    if not stripped.strip("/"):
        return ""
    norm = posixpath.normpath(stripped)
    if norm == ".." or norm.startswith("../"):
        return None
    return "" if norm == "." else norm
