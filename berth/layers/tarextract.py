"""The layer extractor: one pass over a tar, every write made through a descriptor resolved inside
the root (``berth.layers.tarapply`` says why and opens the tar for it)."""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import tarfile
from dataclasses import dataclass

from berth import safepath
from berth.layers.filepool import AffinityPool
from berth.layers.tarentry import (
    WH_OPAQUE,
    WH_PREFIX,
    UnsafeTarError,
    WhiteoutMode,
    clean_name,
    read_umask,
    set_meta,
    set_meta_link,
    set_times_fd,
)
from berth.layers.tarsplit import Split

_COPY_BUF = 1 << 20


@dataclass
class ExtractData:
    """The tar's bytes for the worker threads: ``size`` bytes of ``fd`` from ``base``."""

    fd: int
    base: int
    size: int


class Extractor:
    """One pass over a tar, every write made through a descriptor resolved inside the root.

    The parent directory of each entry is opened with ``openat2(RESOLVE_IN_ROOT)`` (or created
    with ``mkdirat`` in its resolved parent), and the entry is then made with ``*at()`` calls on
    that fd without following a final symlink. The last parent is kept open: consecutive entries
    of one directory (the usual order) cost no lookup; anything that removes a path drops it.

    With worker threads (an empty root only), a regular file whose name is new to this layer is
    handed to the pool (created ``O_EXCL`` in its parent's fd, data read with ``pread``, metadata
    set), while this thread goes on reading headers. Everything else stays on this thread, and
    whatever could meet a file still being made waits for the pool first (``drain``): a name
    seen before in this layer (replacements), hardlinks, whiteouts, a parent path that does not
    resolve to an existing directory (``mkdirs`` may replace a file), and the final pass over
    directory times and vfs opaque dirs. Jobs only ever add names, so any directory that
    resolved stays valid; tar-split records are still written here, in archive order.
    """

    def __init__(self, tf: tarfile.TarFile, root_fd: int, mode: WhiteoutMode, split: Split | None,
                 data: ExtractData | None = None, threads: int = 1) -> None:
        self.tf = tf
        self.root_fd = root_fd
        self.root_path = safepath.fd_path(root_fd).rstrip("/")
        self.mode = mode
        self.split = split
        self.total = 0
        self._parent: tuple[str, int, str] | None = None  # (lexical rel, fd, resolved rel)
        self.dir_times: list[tuple[str, tarfile.TarInfo]] = []  # resolved rels
        self.opaque_dirs: list[str] = []
        self.written: set[str] = set()  # resolved rels (vfs opaque dirs keep these)
        self.written_dirs: set[str] = set()  # every ancestor of a written rel
        self.umask = read_umask()
        self.ids = (os.geteuid(), os.getegid())  # owner of what we create (fsuid follows euid here)
        self.parent_setgid = False  # the cached parent passes its group to new entries
        self.data = data
        self.pool = AffinityPool(threads) if data is not None and threads > 1 else None
        self.retired: list[int] = []  # parent fds that queued jobs may still use
        self.present: set[str] = set()  # with a pool: whiteout devices and parent dirs made here

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()  # no thread may still write once the caller sees the outcome
        self._close_retired()
        self._drop_parent()

    def _close_retired(self) -> None:
        for fd in self.retired:
            os.close(fd)
        self.retired.clear()

    def drain(self) -> None:
        """Wait for every file handed to the pool (raising its first failure)."""
        if self.pool is not None:
            self.pool.drain()
            self._close_retired()

    def _drop_parent(self) -> None:
        if self._parent is not None:
            if self.pool is not None and self.pool.pending:
                self.retired.append(self._parent[1])
                if len(self.retired) >= 64:  # bounds the descriptors held for the pool
                    self.drain()
            else:
                os.close(self._parent[1])
            self._parent = None

    def _maybe_exists(self, res_rel: str) -> bool:
        """Whether this layer already made something at ``res_rel`` (in an empty root, nothing
        else can be there)."""
        return res_rel in self.written or res_rel in self.written_dirs or res_rel in self.present

    def parent(self, rel: str) -> tuple[int, str]:
        """fd and resolved rel of directory ``rel`` (created if missing)."""
        if self._parent is not None and self._parent[0] == rel:
            return self._parent[1], self._parent[2]
        self._drop_parent()
        if self.pool is not None and self.pool.pending:
            try:  # an existing directory: nothing on the way is a file still being made
                fd = safepath.openat2(self.root_fd, safepath.clean_rel(rel), os.O_RDONLY | os.O_DIRECTORY)
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                    raise
                self.drain()  # mkdirs may replace a file on the way, which a job may be making
                fd = safepath.mkdirs_in_root(self.root_fd, rel, 0o755, replace_nondirs=True)
        else:
            fd = safepath.mkdirs_in_root(self.root_fd, rel, 0o755, replace_nondirs=True)
        resolved = self._resolved(fd) if rel else ""
        self._parent = (rel, fd, resolved)
        if self.split and self.split.file_index:
            self._inline_replaced(resolved)
        if self.pool is not None:  # made or met here, so not a new name for the pool (a whiteout's parent)
            d = resolved
            while d and d not in self.present:
                self.present.add(d)
                d = posixpath.dirname(d)
        self.parent_setgid = bool(os.fstat(fd).st_mode & stat.S_ISGID)
        return fd, resolved

    def _inline_replaced(self, resolved: str) -> None:
        """``mkdirs`` turns a file on the way to a directory into a directory (``a`` then ``a/x/``):
        a file this layer wrote there is gone from disk, so tar-split keeps its bytes itself."""
        d = resolved
        while d:
            if d in self.split.file_index:  # type: ignore[union-attr]
                self.split.inline(d)  # type: ignore[union-attr]
            d = posixpath.dirname(d)

    def _resolved(self, fd: int) -> str:
        here = safepath.fd_path(fd)
        if here == self.root_path or (here == "/" and not self.root_path):
            return ""
        if not here.startswith(self.root_path + "/"):
            raise OSError(errno.EXDEV, "directory left the extraction root", here)
        return here[len(self.root_path) + 1:]

    def _mark_written(self, rel: str) -> None:
        self.written.add(rel)
        d = posixpath.dirname(rel)
        while d and d not in self.written_dirs:
            self.written_dirs.add(d)
            d = posixpath.dirname(d)

    def run(self) -> None:
        while True:
            m = self.tf.next()
            if m is None:
                break
            self.entry(m)
            # tarfile keeps every header it read: 31,000 TarInfos for a big layer (members is not in
            # the stubs, getmembers() would read the whole archive)
            self.tf.members.clear()  # type: ignore[attr-defined]
        self.drain()
        if self.mode == "vfs":
            for d in self.opaque_dirs:
                self._clear_unwritten(d)
        self._drop_parent()
        for rel, m in reversed(self.dir_times):
            try:
                fd = safepath.open_in_root(self.root_fd, rel, os.O_RDONLY | os.O_DIRECTORY, follow=False)
            except OSError:
                continue  # replaced later in the archive
            try:
                set_times_fd(fd, m)
            finally:
                os.close(fd)

    def entry(self, m: tarfile.TarInfo) -> None:
        rel = clean_name(m.name)
        if m.sparse is not None:
            raise UnsafeTarError(f"invalid tar entry {m.name!r}: sparse files are not supported")
        if rel == "":
            if m.isdir():
                self.dir_times.append(("", m))
            return
        parent_rel, base = posixpath.split(rel)
        if base.startswith(WH_PREFIX) and self.mode != "plain":
            self.whiteout(m, parent_rel, base)
            return
        pfd, presolved = self.parent(parent_rel)
        res_rel = posixpath.join(presolved, base) if presolved else base
        if self.pool is not None:
            if m.isreg() and not self._maybe_exists(res_rel):
                self._mark_written(res_rel)
                self._submit(m, pfd, base, res_rel)
                return
            if m.islnk() or self._maybe_exists(res_rel):
                self.drain()  # a replacement, or a link to a file that may still be being made
        self._mark_written(res_rel)
        try:
            # optimistic: in a fresh layer the name is free, and every create below fails with
            # EEXIST (before writing anything) when it is not; only then look at what is there
            self.total += self.create(m, rel, pfd, base, fresh=True)
        except FileExistsError:
            self._replace(m, res_rel, pfd, base)
            self.total += self.create(m, rel, pfd, base, fresh=False)
        if m.isreg() and self.split:
            self.split.file(res_rel, m.offset_data, m.size)
        if m.isdir():
            self.dir_times.append((res_rel, m))

    def _replace(self, m: tarfile.TarInfo, res_rel: str, pfd: int, base: str) -> None:
        """``base`` exists in ``pfd``: remove it unless a directory meets a directory (tar merges those)."""
        self.drain()
        existing = safepath.lstat_at(pfd, base)
        if existing is not None and not (m.isdir() and stat.S_ISDIR(existing.st_mode)):
            if self.split:
                self.split.inline_under(res_rel)
            if stat.S_ISDIR(existing.st_mode):
                self._drop_parent_if_under(res_rel, pfd)
            safepath.remove_at(pfd, base)
        elif self.split and m.isdir():
            self.split.inline(res_rel)

    def _drop_parent_if_under(self, res_rel: str, pfd: int) -> None:
        """A directory is being removed: the cached parent must not be it or below it."""
        if self._parent is not None and self._parent[1] != pfd:
            cached = self._parent[2]
            if cached == res_rel or cached.startswith(res_rel + "/"):
                self._drop_parent()

    def whiteout(self, m: tarfile.TarInfo, parent_rel: str, base: str) -> None:
        self.drain()
        pfd, presolved = self.parent(parent_rel)
        if base == WH_OPAQUE:
            self.opaque_dirs.append(presolved)
            if self.mode == "overlay":
                os.setxattr(pfd, "trusted.overlay.opaque", b"y")
            return
        if base.startswith(WH_PREFIX + WH_PREFIX):
            return  # other aufs metadata: nothing to do
        victim = base[len(WH_PREFIX):]
        if victim in ("", ".", "..") or "/" in victim:
            raise UnsafeTarError(f"invalid whiteout {m.name!r}")
        res_rel = posixpath.join(presolved, victim) if presolved else victim
        if self.split:
            self.split.inline_under(res_rel)
        existing = safepath.lstat_at(pfd, victim)
        if existing is not None:
            if stat.S_ISDIR(existing.st_mode):
                self._drop_parent_if_under(res_rel, pfd)
            safepath.remove_at(pfd, victim)
        if self.mode == "overlay":
            os.mknod(victim, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)
            self.present.add(res_rel)

    def create(self, m: tarfile.TarInfo, rel: str, pfd: int, base: str, fresh: bool) -> int:
        """Make entry ``m`` as ``base`` in ``pfd``. ``fresh``: raise ``FileExistsError`` (having
        changed nothing) if the name is taken; otherwise the caller cleared it (or it is a directory
        that a directory entry merges with)."""
        if m.isdir():
            made = True
            try:
                os.mkdir(base, 0o700, dir_fd=pfd)
            except FileExistsError:
                if fresh:
                    raise
                made = False
            fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            try:
                self._meta(fd, m, times=False, made=made, created_mode=0o700)
            finally:
                os.close(fd)
            return 0
        if m.isreg():
            return self._regular(m, pfd, base)
        if m.issym():
            target = m.linkname
            if not target.startswith("/"):
                lexical = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
                if lexical == ".." or lexical.startswith("../"):
                    raise UnsafeTarError(
                        f"invalid symlink {m.name!r} -> {target!r}: target escapes the layer root")
            os.symlink(target, base, dir_fd=pfd)
            set_meta_link(pfd, base, m)
            return len(os.fsencode(target))  # lstat size, which Docker's size accounting counts too
        if m.islnk():
            self._hardlink(m, pfd, base)
            return 0
        if m.ischr() or m.isblk() or m.isfifo():
            if m.isfifo():
                os.mkfifo(base, 0o600, dir_fd=pfd)
            elif os.geteuid() == 0:
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
                os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
            else:
                return 0  # device nodes need privilege; skip them as Docker does rootless
            fd = os.open(base, safepath.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            try:
                set_meta(f"/proc/self/fd/{fd}", m, times=True)
            finally:
                os.close(fd)
            return 0
        raise UnsafeTarError(f"invalid tar entry {m.name!r}: unsupported type {m.type!r}")

    def _regular(self, m: tarfile.TarInfo, pfd: int, base: str) -> int:
        mode = self._create_mode(m)
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=pfd)
        try:
            remaining = m.size
            if remaining:
                src = self.tf.fileobj
                src.seek(m.offset_data)
                while remaining:
                    chunk = src.read(min(_COPY_BUF, remaining))
                    if not chunk:
                        raise UnsafeTarError("invalid tar archive: unexpected end of data")
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                    remaining -= len(chunk)
            self._meta(fd, m, times=True, made=True, created_mode=mode)
        finally:
            os.close(fd)
        return m.size

    def _create_mode(self, m: tarfile.TarInfo) -> int:
        # created with its final permission bits when the umask leaves them as they are and there
        # are no set-id/sticky bits (those wait for the owner to be set); else 0600 until fchmod
        want = m.mode & 0o7777
        return want if want == want & ~self.umask & 0o777 else 0o600

    def _submit(self, m: tarfile.TarInfo, pfd: int, base: str, res_rel: str) -> None:
        """Hand regular file ``m`` to the pool; record it (size, tar-split) here, in order."""
        assert self.pool is not None and self.data is not None
        if m.offset_data + m.size > self.data.size:
            raise UnsafeTarError("invalid tar archive: unexpected end of data")
        self.pool.submit(pfd, self._write_file, m, pfd, base, self._create_mode(m), self.parent_setgid)
        self.total += m.size
        if self.split:
            self.split.file(res_rel, m.offset_data, m.size)

    def _write_file(self, m: tarfile.TarInfo, pfd: int, base: str, mode: int, setgid: bool) -> None:
        """A worker thread's job: the file made, filled from the tar, its metadata set."""
        assert self.data is not None
        try:
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                         dir_fd=pfd)
        except FileExistsError as e:  # the layer is new and the name was not used: someone else wrote here
            raise UnsafeTarError(f"invalid tar entry {m.name!r}: the layer changed while extracted") from e
        try:
            pos, remaining = self.data.base + m.offset_data, m.size
            while remaining:
                chunk = os.pread(self.data.fd, min(_COPY_BUF, remaining), pos)
                if not chunk:
                    raise UnsafeTarError("invalid tar archive: unexpected end of data")
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                pos += len(chunk)
                remaining -= len(chunk)
            self._meta(fd, m, times=True, made=True, created_mode=mode, setgid=setgid)
        finally:
            os.close(fd)

    def _meta(self, fd: int, m: tarfile.TarInfo, times: bool, made: bool, created_mode: int,
              setgid: bool | None = None) -> None:
        """``_set_meta_fd``, minus the calls that would change nothing on an inode we just made:
        its owner is already our fsuid/fsgid (unless the parent is set-group-ID) and its mode the one
        it was created with. ``setgid``: the parent's, when not the cached parent's."""
        sgid = self.parent_setgid if setgid is None else setgid
        skip_owner = made and (m.uid, m.gid) == self.ids and not sgid
        skip_mode = made and created_mode == m.mode & 0o7777 and not sgid
        set_meta(fd, m, times, owner=not skip_owner, mode=not skip_mode)

    def _hardlink(self, m: tarfile.TarInfo, pfd: int, base: str) -> None:
        link_rel = clean_name(m.linkname)
        link_parent, link_base = posixpath.split(link_rel)
        if not link_base:
            raise UnsafeTarError(f"invalid hardlink {m.name!r}: target is the layer root")
        try:
            src_fd = safepath.open_in_root(self.root_fd, link_parent, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise UnsafeTarError(f"invalid hardlink {m.name!r}: target {m.linkname!r} not in layer") from e
        try:
            st = safepath.lstat_at(src_fd, link_base)
            if st is None:
                raise UnsafeTarError(f"invalid hardlink {m.name!r}: target {m.linkname!r} not in layer")
            if stat.S_ISDIR(st.st_mode):
                raise UnsafeTarError(f"invalid hardlink {m.name!r}: target is a directory")
            os.link(link_base, base, src_dir_fd=src_fd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(src_fd)

    def _clear_unwritten(self, rel_dir: str) -> None:
        """vfs opaque dir: drop what the lower layers put there (this layer's entries stay)."""
        try:
            fd = safepath.open_in_root(self.root_fd, rel_dir, os.O_RDONLY | os.O_DIRECTORY, follow=False)
        except OSError:
            return
        try:
            for name in os.listdir(fd):
                rel = posixpath.join(rel_dir, name) if rel_dir else name
                if rel in self.written_dirs:
                    self._clear_unwritten(rel)
                elif rel not in self.written:
                    safepath.remove_at(fd, name)
        finally:
            os.close(fd)
