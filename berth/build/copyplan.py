"""What a COPY/ADD writes (CopyPlan), the checksum that decides its cache reuse, and the tar that writes it
into a target rootfs."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from berth import safepath

_BUF = 1 << 20
O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class CopyError(Exception):
    """A copy Docker would refuse; str() is Docker's wording."""



@dataclass(frozen=True)
class CopyEntry:
    name: str               # path in the target rootfs, relative to "/" (no leading "/")
    kind: str               # dir | file | symlink | hardlink | fifo | char | block
    mode: int               # permission bits, set-id and sticky included
    uid: int
    gid: int
    mtime_ns: int
    size: int = 0
    linkname: str = ""      # symlink target as written; hardlink: another entry's name
    digest: str = ""        # sha256 hex of a file's content ("" for archive members: see archive_digest)
    rdev: tuple[int, int] = (0, 0)
    src: str = ""           # file: resolved path inside the source root
    data: bytes | None = None                 # inline content (a heredoc)
    member: tuple[int, int, int] | None = None  # archive member: (archive index, data offset, size)


@dataclass
class CopyPlan:
    checksum: str
    entries: list[CopyEntry]
    src_root: str
    archives: list[str] = field(default_factory=list)   # spooled (uncompressed) ADD archives
    archive_digests: list[str] = field(default_factory=list)

    def write_tar(self, out: BinaryIO) -> None:
        """A tar to extract at "/" of the target rootfs: final paths, sorted, parents first."""
        tf = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
        root_fd = os.open(self.src_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for e in self.entries:
                ti = tarfile.TarInfo(e.name + "/" if e.kind == "dir" else e.name)
                ti.mode, ti.uid, ti.gid = e.mode, e.uid, e.gid
                ti.uname = ti.gname = ""
                ti.mtime = e.mtime_ns // 1_000_000_000
                if e.kind == "dir":
                    ti.type = tarfile.DIRTYPE
                    tf.addfile(ti)
                elif e.kind == "symlink":
                    ti.type, ti.linkname = tarfile.SYMTYPE, e.linkname
                    tf.addfile(ti)
                elif e.kind == "hardlink":
                    ti.type, ti.linkname = tarfile.LNKTYPE, e.linkname
                    tf.addfile(ti)
                elif e.kind in ("fifo", "char", "block"):
                    ti.type = {"fifo": tarfile.FIFOTYPE, "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE}[e.kind]
                    ti.devmajor, ti.devminor = e.rdev
                    tf.addfile(ti)
                elif e.data is not None:
                    ti.size = len(e.data)
                    tf.addfile(ti, io.BytesIO(e.data))
                elif e.member is not None:
                    index, offset, size = e.member
                    ti.size = size
                    with open(self.archives[index], "rb") as f:
                        f.seek(offset)
                        tf.addfile(ti, _Exact(f, size))
                else:
                    ti.size = e.size
                    self._add_source_file(tf, ti, root_fd, e)
            tf.close()
        except BaseException:
            # a failed stream must not end like a complete archive (nor be flushed later by GC)
            tf.fileobj.closed = True  # type: ignore[attr-defined]
            tf.closed = True  # type: ignore[attr-defined]
            raise
        finally:
            os.close(root_fd)

    def _add_source_file(self, tf: tarfile.TarFile, ti: tarfile.TarInfo, root_fd: int, e: CopyEntry) -> None:
        try:
            fd = safepath.openat2(root_fd, e.src, O_FILE)
        except OSError as err:
            raise CopyError(f"failed to copy files: open {e.src}: {err.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != e.size:
                raise CopyError(f"failed to copy files: {e.src} changed during the build")
            reader = _HashingReader(fd, e.size)
            tf.addfile(ti, reader)
            if reader.hexdigest() != e.digest:
                raise CopyError(f"failed to copy files: {e.src} changed during the build")
        finally:
            os.close(fd)

    def close(self) -> None:
        for path in self.archives:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.archives = []

    def __enter__(self) -> CopyPlan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def plan_checksum(entries: Sequence[CopyEntry], archive_digests: Sequence[str]) -> str:
    """What decides reuse: each entry's path, type, mode, owner, size, link and content (not its
    times, as Docker's tarsum v1), and the content of unpacked archives."""
    h = hashlib.sha256()
    for d in archive_digests:
        h.update(f"archive {d}\n".encode())
    for e in entries:
        line = f"{e.name}\0{e.kind}\0{e.mode:o}\0{e.uid}\0{e.gid}\0{e.size}\0{e.linkname}\0{e.digest}\0" \
               f"{e.rdev[0]},{e.rdev[1]}\0{'' if e.member is None else e.member[0]}\n"
        h.update(line.encode("utf-8", "surrogateescape"))
    return "sha256:" + h.hexdigest()


class _Exact:
    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f = f
        self.left = size

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self.left:
            n = self.left
        data = self.f.read(n)
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self.left -= n
        return data


class _HashingReader:
    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.left = size
        self.h = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self.left:
            n = self.left
        buf = b""
        while len(buf) < n:
            chunk = os.read(self.fd, min(_BUF, n - len(buf)))
            if not chunk:
                buf += b"\0" * (n - len(buf))  # shrank: the digest check below refuses it
                break
            buf += chunk
        self.left -= len(buf)
        self.h.update(buf)
        return buf

    def hexdigest(self) -> str:
        return self.h.hexdigest()
