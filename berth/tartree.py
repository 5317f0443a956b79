"""Stream a directory tree into a tar through directory descriptors, never by path.

Shared by ``docker cp``/``export`` (berth.containers.archive), copy-up into volumes and the
storage drivers' layer diffs (berth.layers.diff): every level is opened ``O_NOFOLLOW`` from its
parent's fd, so a tree that changes while it is read (a running container's) can make an entry
vanish or fail, never lead the reader outside the tree.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from types import TracebackType
from typing import BinaryIO

from berth import safepath

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a file swapped for a FIFO between lstat and open must not hang the stream
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_COPY_BUF = 1 << 20
_SKIP_XATTR_PREFIX = "trusted.overlay."  # overlay's own bookkeeping, meaningless elsewhere


# ---------------------------------------------------------------------------------------------
# descriptor-based tree access


def open_root(path: str) -> int:
    """Directory fd for a host path the daemon owns (a rootfs, an upper or layer dir)."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def open_child_dir(dir_fd: int, name: str) -> int | None:
    """fd of subdirectory ``name``, or None if it vanished or stopped being a directory."""
    try:
        return os.open(name, _O_DIR, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise


def scan_dir(dir_fd: int) -> list[tuple[str, os.stat_result]]:
    """(name, lstat) of every entry, in byte order of the names (Go's filepath.Walk order)."""
    out: list[tuple[str, os.stat_result]] = []
    with os.scandir(dir_fd) as it:
        for entry in it:
            try:
                out.append((entry.name, entry.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue  # removed while we listed
    out.sort(key=lambda item: os.fsencode(item[0]))
    return out


def read_xattrs(dir_fd: int, name: str) -> dict[str, bytes]:
    """Extended attributes of ``name`` (not followed), minus overlay's private ones."""
    # /proc/self/fd/N is the directory we hold open; only ``name`` is looked up, unfollowed
    path = f"/proc/self/fd/{dir_fd}/{name}"
    try:
        keys = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out: dict[str, bytes] = {}
    for key in sorted(keys):
        if key.startswith(_SKIP_XATTR_PREFIX):
            continue
        try:
            out[key] = os.getxattr(path, key, follow_symlinks=False)
        except OSError:
            continue
    return out


class _ExactReader:
    """Exactly ``size`` bytes of an fd: zero-padded if the file shrank, cut if it grew.

    The header was already written with the fstat size; a live container may still be writing.
    """

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.left = size

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self.left:
            n = self.left
        buf = b""
        while len(buf) < n:
            chunk = os.read(self.fd, min(_COPY_BUF, n - len(buf)))
            if not chunk:
                buf += b"\0" * (n - len(buf))
                break
            buf += chunk
        self.left -= len(buf)
        return buf


class TarTreeWriter:
    """Streams filesystem objects into an uncompressed PAX tar, reading through directory fds.

    Hardlinks (same inode met twice) become link entries to the first name; sockets, which tar
    cannot hold, are skipped (as Docker does).
    """

    def __init__(self, out: BinaryIO, mtime_clamp: int | None = None) -> None:
        self._tf = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
        self._links: dict[tuple[int, int], str] = {}
        # reproducible layers: no entry newer than this (SOURCE_DATE_EPOCH, or a fixed epoch)
        self._clamp = mtime_clamp

    def __enter__(self) -> TarTreeWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self._tf.close()  # end-of-archive blocks only for a complete archive
        else:
            # a failed stream must not look complete, nor be flushed into ``out`` later by GC
            self._tf.fileobj.closed = True  # type: ignore[union-attr]
            self._tf.closed = True

    def entry(self, arcname: str, dir_fd: int, name: str, st: os.stat_result) -> bool:
        """Write ``name`` (in ``dir_fd``, as described by its lstat ``st``) as ``arcname``.

        Directories get a header only. Returns False if nothing was written (a socket, or the
        object changed or vanished since ``st`` was taken).
        """
        fmt = stat.S_IFMT(st.st_mode)
        ti = _header(arcname, st)
        if self._clamp is not None and ti.mtime > self._clamp:
            ti.mtime = self._clamp
        if fmt == stat.S_IFDIR:
            ti.type = tarfile.DIRTYPE
            ti.name = arcname.rstrip("/") + "/"
        elif fmt == stat.S_IFLNK:
            ti.type = tarfile.SYMTYPE
            try:
                ti.linkname = os.readlink(name, dir_fd=dir_fd)
            except OSError:
                return False
        elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
            ti.type = tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif fmt == stat.S_IFIFO:
            ti.type = tarfile.FIFOTYPE
        elif fmt != stat.S_IFREG:
            return False
        ti.pax_headers = {"SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape")
                          for k, v in read_xattrs(dir_fd, name).items()}
        key = (st.st_dev, st.st_ino)
        if fmt != stat.S_IFDIR and st.st_nlink > 1 and key in self._links:
            ti.type = tarfile.LNKTYPE
            ti.linkname = self._links[key]
            self._tf.addfile(ti)
            return True
        if fmt == stat.S_IFREG:
            if not self._add_file(ti, dir_fd, name, st):
                return False
        else:
            self._tf.addfile(ti)
        if fmt != stat.S_IFDIR and st.st_nlink > 1:
            self._links[key] = ti.name
        return True

    def _add_file(self, ti: tarfile.TarInfo, dir_fd: int, name: str, st: os.stat_result) -> bool:
        try:
            fd = os.open(name, _O_FILE, dir_fd=dir_fd)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ELOOP, errno.ENXIO, errno.ENOTDIR):
                return False
            raise
        try:
            fst = os.fstat(fd)
            if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                return False  # replaced since the listing
            ti.size = fst.st_size
            self._tf.addfile(ti, _ExactReader(fd, fst.st_size))  # type: ignore[arg-type]
        finally:
            os.close(fd)
        return True

    def empty_file(self, arcname: str, mode: int = 0o600, uid: int = 0, gid: int = 0, mtime: int = 0) -> None:
        """An empty regular file entry: whiteout markers."""
        ti = tarfile.TarInfo(arcname)
        ti.type = tarfile.REGTYPE
        ti.mode, ti.uid, ti.gid, ti.mtime = mode, uid, gid, mtime
        if self._clamp is not None and ti.mtime > self._clamp:
            ti.mtime = self._clamp
        ti.uname = ti.gname = ""
        self._tf.addfile(ti)

    def tree(self, prefix: str, dir_fd: int) -> None:
        """Everything below ``dir_fd``, named ``prefix + relative path``, parents first.

        Mount points of kernel pseudo filesystems (a running container's ``/proc``, ``/sys``)
        are archived as empty directories, as Docker's view of a container has them.
        """
        here = os.fstat(dir_fd).st_dev
        for name, st in scan_dir(dir_fd):
            arcname = prefix + name
            if not self.entry(arcname, dir_fd, name, st) or not stat.S_ISDIR(st.st_mode):
                continue
            child = open_child_dir(dir_fd, name)
            if child is None:
                continue
            try:
                if st.st_dev != here and safepath.is_pseudo_fs(child):
                    continue
                self.tree(arcname + "/", child)
            finally:
                os.close(child)


def _header(arcname: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(arcname)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.uname = ti.gname = ""  # no name lookups: the host's passwd says nothing about the image
    ti.mtime = st.st_mtime_ns // 1_000_000_000  # whole seconds, as Docker writes layers
    return ti
