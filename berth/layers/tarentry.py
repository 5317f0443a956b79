"""A tar entry as the layer extractor (``berth.layers.tarextract``) applies it: its name made
safe, the whiteout names, and its owner, mode, xattrs and times set on what was made."""

from __future__ import annotations

import errno
import os
import posixpath
import tarfile
from collections.abc import Iterator
from typing import Literal

from berth.errors import InvalidParameter

WhiteoutMode = Literal["overlay", "vfs", "plain"]  # plain: .wh. names are ordinary files
WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"


class UnsafeTarError(InvalidParameter):
    """The archive is malformed or tries to reach outside the layer."""


def clean_name(name: str) -> str:
    """Entry name → a relative path inside the root; raises on ``..`` escapes.

    Leading ``/`` is dropped (``/etc/x`` means ``etc/x`` inside the layer, as in Docker).
    """
    norm = posixpath.normpath("/" + name.lstrip("/"))
    lexical = posixpath.normpath(name.lstrip("/")) if name.strip("/") else "."
    if lexical == ".." or lexical.startswith("../"):
        raise UnsafeTarError(f"invalid tar entry {name!r}: path escapes the layer root")
    rel = norm.lstrip("/")
    return rel


def read_umask() -> int:
    """The process umask, read without setting it (``os.umask`` would race other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o777  # unknown: never rely on it (every entry gets its fchmod)


def _xattrs(m: tarfile.TarInfo) -> Iterator[tuple[str, bytes]]:
    for key, val in m.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            name = key[len("SCHILY.xattr."):]
            if name.startswith("trusted.overlay."):
                continue  # never let an archive forge overlay metadata
            yield name, val.encode("utf-8", "surrogateescape")


def _chown_ok(e: OSError) -> bool:
    return e.errno in (errno.EPERM, errno.EINVAL)


def set_meta(target: int | str, m: tarfile.TarInfo, times: bool, owner: bool = True, mode: bool = True) -> None:
    """Owner, xattrs, mode (and times) of an object we hold: an fd we opened, or for a device node
    or FIFO held by an ``O_PATH`` fd (opening it could block or reach a device) the path
    ``/proc/self/fd/N``, which names exactly that inode."""
    if owner:
        try:
            os.chown(target, m.uid, m.gid)
        except OSError as e:
            if not _chown_ok(e):
                raise
    for name, val in _xattrs(m):
        try:
            os.setxattr(target, name, val)
        except OSError:
            pass
    if mode:
        os.chmod(target, m.mode & 0o7777)
    if times:
        mtime, atime = entry_times(m)
        try:
            os.utime(target, (atime, mtime))
        except OSError:
            pass


def set_meta_link(pfd: int, base: str, m: tarfile.TarInfo) -> None:
    """A symlink's owner, xattrs and times, by name in its parent's fd and never followed."""
    try:
        os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
    except OSError as e:
        if not _chown_ok(e):
            raise
    for name, val in _xattrs(m):
        try:
            os.setxattr(f"/proc/self/fd/{pfd}/{base}", name, val, follow_symlinks=False)
        except OSError:
            pass
    mtime, atime = entry_times(m)
    try:
        os.utime(base, (atime, mtime), dir_fd=pfd, follow_symlinks=False)
    except OSError:
        pass


def entry_times(m: tarfile.TarInfo) -> tuple[float, float]:
    mtime = float(m.pax_headers.get("mtime", m.mtime))
    return mtime, float(m.pax_headers.get("atime", mtime))


def set_times_fd(fd: int, m: tarfile.TarInfo) -> None:
    mtime, atime = entry_times(m)
    try:
        os.utime(fd, (atime, mtime))
    except OSError:
        pass
