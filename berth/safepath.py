"""Open paths inside a tree that someone else may be changing: a container rootfs, a volume.

The rule (CVE-2018-15664, CVE-2017-1002101): never check a path and then use it by name. Every
lookup here goes through ``openat2(2)`` with ``RESOLVE_IN_ROOT`` from a descriptor on the tree's
root, so the kernel resolves symlinks (and ``..``) as if that descriptor were ``/`` in one atomic
walk; the caller then works on the descriptor it got (``*at()`` calls, ``/proc/self/fd/N``).
A directory swapped for a symlink mid-operation can change *which* entry inside the tree we reach,
never lead us outside it. ``RESOLVE_NO_MAGICLINKS`` keeps a container's ``/proc/self/root``-style
links from jumping out as well.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import posixpath
import stat

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long

_SYS_OPENAT2 = 437  # the same number on every architecture (new syscalls share one table)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS

O_PATH = getattr(os, "O_PATH", 0o10000000)
_MAX_DEPTH = 4096  # components in one path: a hostile name cannot make us walk for ever
_MAX_HOPS = 40  # symlinks followed in one userspace resolution, as the kernel's MAXSYMLINKS


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dir_fd: int, path: str, flags: int, mode: int = 0, resolve: int = IN_ROOT) -> int:
    """``openat2(2)``; retries the EAGAIN the kernel returns when a rename raced the walk."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    raw = os.fsencode(path or ".")
    for _ in range(128):
        fd = _libc.syscall(_SYS_OPENAT2, ctypes.c_int(dir_fd), ctypes.c_char_p(raw), ctypes.byref(how),
                           ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, "the tree kept changing while it was being resolved", path)


def clean_rel(path: str) -> str:
    """``path`` (absolute or relative, as a user or an archive wrote it) as a relative path
    without ``.`` components; ``..`` is left for the kernel to clamp at the root."""
    parts = [p for p in path.split("/") if p and p != "."]
    if len(parts) > _MAX_DEPTH:
        raise OSError(errno.ENAMETOOLONG, "path has too many components", path[:200])
    return "/".join(parts)


def open_in_root(root_fd: int, rel: str, flags: int = O_PATH, follow: bool = True, mode: int = 0) -> int:
    """fd for ``rel`` resolved inside ``root_fd``; ``follow=False`` opens a final symlink itself."""
    if not follow:
        flags |= os.O_NOFOLLOW
    return openat2(root_fd, clean_rel(rel), flags, mode)


def open_dir_in_root(root_fd: int, rel: str) -> int:
    """A readable directory fd for ``rel`` inside ``root_fd`` (final symlinks followed, inside)."""
    return openat2(root_fd, clean_rel(rel), os.O_RDONLY | os.O_DIRECTORY)


def fd_path(fd: int) -> str:
    """The path the kernel shows for ``fd``: for our own trees only (logging, tar-split records)."""
    return os.readlink(f"/proc/self/fd/{fd}")


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def resolve_rel(root_fd: int, rel: str, follow_last: bool = True) -> str:
    """The path ``rel`` names inside the tree, symlinks resolved as if ``root_fd`` were ``/``.

    Descriptor-based (each component opened ``O_NOFOLLOW`` from its parent's fd), so a tree that
    changes meanwhile gives a stale answer, never one outside the tree. Missing components are
    kept as written. For display (``linkTarget``) and for naming entries; to *use* a path, open it
    with ``open_in_root``.
    """
    todo = clean_rel(rel).split("/") if clean_rel(rel) else []
    todo.reverse()
    done: list[str] = []
    fds = [os.dup(root_fd)]
    hops = 0
    try:
        while todo:
            part = todo.pop()
            if part == "..":
                if done:
                    done.pop()
                    os.close(fds.pop())
                continue
            last = not todo
            try:
                fd = os.open(part, O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fds[-1])
            except (FileNotFoundError, NotADirectoryError):
                done.append(part)
                done.extend(reversed(todo))
                return "/".join(done)
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode) and (follow_last or not last):
                target = os.readlink("", dir_fd=fd)
                os.close(fd)
                hops += 1
                if hops > _MAX_HOPS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", rel)
                if target.startswith("/"):
                    while len(fds) > 1:
                        os.close(fds.pop())
                    done = []
                parts = [p for p in target.split("/") if p and p != "."]
                todo.extend(reversed(parts))
                if len(todo) > _MAX_DEPTH:
                    raise OSError(errno.ENAMETOOLONG, "symlink expansion too long", rel)
                continue
            done.append(part)
            fds.append(fd)
        return "/".join(done)
    finally:
        for fd in fds:
            os.close(fd)


def mkdirs_in_root(root_fd: int, rel: str, mode: int = 0o755, replace_nondirs: bool = False) -> int:
    """A readable fd on directory ``rel`` inside ``root_fd``, creating what is missing.

    Each directory is made with ``mkdirat`` in the fd of its resolved parent, so nothing is ever
    created outside the tree. A dangling symlink on the way is followed (its target is created,
    inside the tree), as ``mkdir -p`` in a chroot would. ``replace_nondirs`` lets a layer's
    directory replace a file of the same name (tar semantics); otherwise that is ENOTDIR.
    """
    rel = clean_rel(rel)
    try:
        return openat2(root_fd, rel, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise
    return _mkdirs_slow(root_fd, rel, mode, replace_nondirs, 0)


def _mkdirs_slow(root_fd: int, rel: str, mode: int, replace_nondirs: bool, hops: int) -> int:
    fd = os.dup(root_fd)
    prefix: list[str] = []
    try:
        for part in rel.split("/") if rel else []:
            prefix.append(part)
            path = "/".join(prefix)
            try:
                nfd = openat2(root_fd, path, os.O_RDONLY | os.O_DIRECTORY)
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                    raise
                nfd = _make_child(root_fd, fd, part, mode, replace_nondirs, hops, e.errno)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _make_child(root_fd: int, parent_fd: int, part: str, mode: int, replace_nondirs: bool, hops: int,
                err: int) -> int:
    """``part`` in ``parent_fd`` is missing or not a directory: make it one."""
    if part == "..":  # the kernel clamps ``..`` at the root, so a missing ``..`` cannot happen; be safe
        raise OSError(errno.EINVAL, "'..' names no directory to create")
    st = lstat_at(parent_fd, part)
    if st is not None and stat.S_ISLNK(st.st_mode):
        if hops >= _MAX_HOPS:
            raise OSError(errno.ELOOP, "too many levels of symbolic links", part)
        # follow it inside the tree: where does the link point, relative to the root?
        base = resolve_rel(root_fd, _rel_of(root_fd, parent_fd))
        try:
            target = os.readlink(part, dir_fd=parent_fd)
        except OSError as e:  # swapped for a non-link (EINVAL) or removed since the lstat
            raise OSError(errno.EAGAIN, "tree changed while it was being created", part) from e
        dest = clean_rel(target) if target.startswith("/") else clean_rel(posixpath.join(base, target))
        dest = posixpath.normpath("/" + dest).lstrip("/")
        existing = lstat_at(parent_fd, part)
        if existing is None or not stat.S_ISLNK(existing.st_mode):
            raise OSError(errno.EAGAIN, "tree changed while it was being created", part)
        try:
            return openat2(root_fd, dest, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise
        return _mkdirs_slow(root_fd, dest, mode, replace_nondirs, hops + 1)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        if not replace_nondirs:
            raise OSError(errno.ENOTDIR, "not a directory", part)
        os.unlink(part, dir_fd=parent_fd)
    try:
        os.mkdir(part, mode, dir_fd=parent_fd)
    except FileExistsError:
        pass  # made meanwhile; the open below checks what it is
    return os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)


def _rel_of(root_fd: int, dir_fd: int) -> str:
    """Path of ``dir_fd`` relative to ``root_fd`` (both ours, both live): for link resolution."""
    root = fd_path(root_fd)
    here = fd_path(dir_fd)
    if here == root:
        return ""
    if not here.startswith(root.rstrip("/") + "/"):
        raise OSError(errno.EXDEV, "directory is no longer inside the tree", here)
    return here[len(root.rstrip("/")) + 1:]


def remove_at(dir_fd: int, name: str) -> None:
    """Remove ``name`` in ``dir_fd`` and, for a directory, everything under it, never following a
    symlink (each level is opened ``O_NOFOLLOW`` from its parent's fd). Missing is fine."""
    st = lstat_at(dir_fd, name)
    if st is None:
        return
    own = _open_dir_nofollow(dir_fd, name) if stat.S_ISDIR(st.st_mode) else None
    if own is None:
        _unlink(dir_fd, name)
        return
    # iterative, one frame per level: a hostile tree may be deeper than Python's recursion limit
    stack: list[tuple[int, str, int, list[tuple[str, bool]]]] = []
    stack.append((os.dup(dir_fd), name, own, _entries(own)))
    try:
        while stack:
            parent, dname, fd, todo = stack[-1]
            if todo:
                ename, is_dir = todo.pop()
                child = _open_dir_nofollow(fd, ename) if is_dir else None
                if child is None:
                    _unlink(fd, ename)
                    continue
                if len(stack) >= _MAX_DEPTH:
                    os.close(child)
                    raise OSError(errno.ELOOP, "directory tree too deep to remove", dname)
                stack.append((os.dup(fd), ename, child, _entries(child)))
                continue
            stack.pop()
            os.close(fd)
            try:
                os.rmdir(dname, dir_fd=parent)
            except FileNotFoundError:
                pass
            finally:
                os.close(parent)
    finally:
        for parent, _n, fd, _t in stack:
            os.close(parent)
            os.close(fd)


def _entries(fd: int) -> list[tuple[str, bool]]:
    with os.scandir(fd) as it:
        return [(e.name, e.is_dir(follow_symlinks=False)) for e in it]


def _open_dir_nofollow(dir_fd: int, name: str) -> int | None:
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise


def _unlink(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        remove_at(dir_fd, name)  # became a directory meanwhile


class _StatFs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_long * 15)]


_libc.fstatfs.argtypes = [ctypes.c_int, ctypes.POINTER(_StatFs)]
# proc, sysfs, cgroup v1/v2, devpts, mqueue, debugfs, tracefs, securityfs, bpf, pstore, configfs
_PSEUDO_FS = {0x9FA0, 0x62656572, 0x27E0EB, 0x63677270, 0x1CD1, 0x19800202, 0x64626720, 0x74726163,
              0x73636673, 0xCAFE4A11, 0x6165676C, 0x62656570}


def is_pseudo_fs(fd: int) -> bool:
    """Whether ``fd`` lies on a kernel pseudo filesystem (``/proc``, ``/sys``…): a running
    container's view has them mounted, and their files are not data to archive (``/proc/kcore``
    claims 128 TiB)."""
    buf = _StatFs()
    if _libc.fstatfs(fd, ctypes.byref(buf)) != 0:
        return False
    return (buf.f_type & 0xFFFFFFFF) in _PSEUDO_FS
