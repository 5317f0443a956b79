"""A container layer's changes: ``docker diff`` entries and the layer tar of ``docker commit``.

The storage drivers call these (``Driver.changes``, ``Driver.write_diff``); nothing outside
``berth.layers`` needs to know which comparison a driver's layout calls for.

overlay: the upper dir *is* the change set. A whiteout (0:0 char device) is a deletion, an
opaque dir (``trusted.overlay.opaque=y``) hides everything the lowers had below it, anything
else was added (absent from the lowers) or modified (copied up). The lowers are consulted only
to tell added from modified and to list what an opaque dir hides.

vfs: the container dir started as a full copy of the image's top layer, so changes come from
comparing the two trees (type, mode, owner, and for non-dirs size, mtime, link target).

Trees are walked through directory descriptors (see ``archive``): a running container that
swaps a directory for a symlink cannot make us read, or list, anything outside its tree.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from berth.layers.tarentry import WH_OPAQUE, WH_PREFIX
from berth.safepath import lstat_at
from berth.tartree import TarTreeWriter, open_child_dir, open_root, scan_dir

MODIFIED = 0
ADDED = 1
DELETED = 2

_OPAQUE_XATTR = "trusted.overlay.opaque"


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _to_api(changes: list[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{"Path": "/" + rel, "Kind": kind} for rel, kind in sorted(changes, key=lambda c: os.fsencode(c[0]))]


# ---------------------------------------------------------------------------------------------
# overlay


@dataclass
class _OvlEvent:
    kind: int
    rel: str
    dir_fd: int  # upper directory holding the entry; -1 for deletions implied by an opaque dir
    name: str
    st: os.stat_result | None
    opaque: bool = False


def _path_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _fd_opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, _OPAQUE_XATTR) == b"y"
    except OSError:
        return False


def _root_lowers(lowers: list[str]) -> list[str]:
    out: list[str] = []
    for d in lowers:
        out.append(d)
        if _path_opaque(d):
            break  # an opaque layer root hides every layer below it
    return out


def _lower_lookup(lower_dirs: list[str], name: str) -> tuple[os.stat_result | None, list[str]]:
    """What the merged lowers show at ``name``: its lstat and, for a dir, the layer dirs merged there.

    Follows overlayfs lookup: top layer first; a whiteout or a non-dir ends the search, an
    opaque dir is the last one merged.
    """
    found: os.stat_result | None = None
    merged: list[str] = []
    for d in lower_dirs:
        path = os.path.join(d, name)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if _is_whiteout(st):
            break
        if found is None:
            found = st
        if not stat.S_ISDIR(st.st_mode):
            break
        merged.append(path)
        if _path_opaque(path):
            break
    return found, merged


def _lower_names(lower_dirs: list[str]) -> set[str]:
    """Names visible in the merge of ``lower_dirs`` (a whiteout hides the name in layers below)."""
    visible: set[str] = set()
    hidden: set[str] = set()
    for d in lower_dirs:
        with os.scandir(d) as it:
            for entry in it:
                if entry.name in visible or entry.name in hidden:
                    continue
                if _is_whiteout(entry.stat(follow_symlinks=False)):
                    hidden.add(entry.name)
                else:
                    visible.add(entry.name)
    return visible


def _overlay_events(upper: str, lowers: list[str]) -> Iterator[_OvlEvent]:
    """Every change recorded in ``upper``, parents before children; fds valid during the yield."""
    fd = open_root(upper)
    try:
        yield from _overlay_dir(fd, "", _root_lowers(lowers), False)
    finally:
        os.close(fd)


def _overlay_dir(fd: int, rel: str, lower_dirs: list[str], hidden: bool) -> Iterator[_OvlEvent]:
    # hidden: an opaque dir at or above here means the lowers are not merged in, only replaced
    entries = scan_dir(fd)
    for name, st in entries:
        crel = _join(rel, name)
        if _is_whiteout(st):
            yield _OvlEvent(DELETED, crel, fd, name, st)
            continue
        lower_st, child_lowers = _lower_lookup(lower_dirs, name)
        kind = ADDED if lower_st is None else MODIFIED
        child = open_child_dir(fd, name) if stat.S_ISDIR(st.st_mode) else None
        if child is None:
            yield _OvlEvent(kind, crel, fd, name, st)
            continue
        try:
            opaque = _fd_opaque(child)
            yield _OvlEvent(kind, crel, fd, name, st, opaque)
            yield from _overlay_dir(child, crel, child_lowers, hidden or opaque)
        finally:
            os.close(child)
    if hidden and lower_dirs:
        present = {name for name, _ in entries}
        for name in sorted(_lower_names(lower_dirs) - present, key=os.fsencode):
            yield _OvlEvent(DELETED, _join(rel, name), -1, name, None)  # one entry, like a whiteout


def changes_overlay(upper: str, lowers: list[str]) -> list[dict[str, Any]]:
    """``GET /containers/{id}/changes`` for an overlay container; ``lowers`` top layer first.

    Kind 0 modified, 1 added, 2 deleted; sorted by path. A deleted directory is one entry.
    """
    return _to_api([(ev.rel, ev.kind) for ev in _overlay_events(upper, lowers)])


def write_layer_tar_overlay(upper: str, lowers: list[str], out: BinaryIO, mtime_clamp: int | None = None) -> None:
    """The upper dir as an image layer tar (whiteouts as ``.wh.`` files, opaque dirs as
    ``.wh..wh..opq``). The upper alone defines the layer; ``lowers`` is accepted for symmetry
    with ``changes_overlay`` and is not read. ``mtime_clamp``: no entry's mtime later than this.
    """
    del lowers  # the lowers only classify changes, which a layer tar does not record
    with TarTreeWriter(out, mtime_clamp) as w:
        for ev in _overlay_events(upper, []):
            assert ev.st is not None  # implied deletions need lowers, and we passed none
            parent = posixpath.dirname(ev.rel)
            if ev.kind == DELETED:
                w.empty_file(_join(parent, WH_PREFIX + ev.name), 0o600, ev.st.st_uid, ev.st.st_gid,
                             ev.st.st_mtime_ns // 1_000_000_000)
                continue
            if not w.entry(ev.rel, ev.dir_fd, ev.name, ev.st):
                continue
            if ev.opaque:
                w.empty_file(_join(ev.rel, WH_OPAQUE), stat.S_IMODE(ev.st.st_mode) & 0o777, ev.st.st_uid,
                             ev.st.st_gid, ev.st.st_mtime_ns // 1_000_000_000)


# ---------------------------------------------------------------------------------------------
# vfs


def _same_mtime(a: os.stat_result, b: os.stat_result) -> bool:
    if a.st_mtime_ns == b.st_mtime_ns:
        return True
    # a copy onto a filesystem without sub-second times keeps only the seconds (as Docker allows)
    sa, na = divmod(a.st_mtime_ns, 1_000_000_000)
    sb, nb = divmod(b.st_mtime_ns, 1_000_000_000)
    return sa == sb and (na == 0 or nb == 0)


def _capability(dir_fd: int, name: str) -> bytes | None:
    try:
        return os.getxattr(f"/proc/self/fd/{dir_fd}/{name}", "security.capability", follow_symlinks=False)
    except OSError:
        return None


def _differs(b: os.stat_result, r: os.stat_result, base_fd: int, rw_fd: int, name: str) -> bool:
    if b.st_mode != r.st_mode or b.st_uid != r.st_uid or b.st_gid != r.st_gid:
        return True
    if stat.S_ISDIR(r.st_mode):
        return False  # a dir's size and mtime move with its entries, which are compared themselves
    if (stat.S_ISCHR(r.st_mode) or stat.S_ISBLK(r.st_mode)) and b.st_rdev != r.st_rdev:
        return True
    if b.st_size != r.st_size or not _same_mtime(b, r):
        return True
    try:
        if stat.S_ISLNK(r.st_mode):
            return os.readlink(name, dir_fd=base_fd) != os.readlink(name, dir_fd=rw_fd)
        if stat.S_ISREG(r.st_mode):
            return _capability(base_fd, name) != _capability(rw_fd, name)  # setcap moves only ctime
    except OSError:
        return True
    return False


def _vfs_walk(base_fd: int | None, rw_fd: int, rel: str, out: list[tuple[str, int]],
              ignore: frozenset[str] = frozenset()) -> bool:
    """Append the changes below ``rel`` to ``out`` (parents first); True if there were any.

    ``ignore``: paths the driver made itself where the base has none (the runtime's mount points);
    they are no change, though a dir among them holding the container's own files is one."""
    start = len(out)
    rw_entries = dict(scan_dir(rw_fd))
    base_entries = dict(scan_dir(base_fd)) if base_fd is not None else {}
    for name in sorted(rw_entries.keys() | base_entries.keys(), key=os.fsencode):
        crel = _join(rel, name)
        r, b = rw_entries.get(name), base_entries.get(name)
        if r is None:
            out.append((crel, DELETED))  # a deleted dir is one entry
            continue
        if b is not None and base_fd is not None:
            changed = _differs(b, r, base_fd, rw_fd, name)
        else:
            changed = crel not in ignore
        if not stat.S_ISDIR(r.st_mode):
            if changed:
                out.append((crel, ADDED if b is None else MODIFIED))
            continue
        at = len(out)
        out.append((crel, ADDED if b is None else MODIFIED))  # keeps the dir ahead of its children
        rw_child = open_child_dir(rw_fd, name)
        base_child = open_child_dir(base_fd, name) if b is not None and base_fd is not None and \
            stat.S_ISDIR(b.st_mode) else None
        try:
            sub = _vfs_walk(base_child, rw_child, crel, out, ignore) if rw_child is not None else False
        finally:
            for fd in (rw_child, base_child):
                if fd is not None:
                    os.close(fd)
        if not changed and not sub:
            del out[at]
    return len(out) > start


def _vfs_changes(base: str, rw: str, ignore: frozenset[str]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    rw_fd = open_root(rw)
    base_fd = open_root(base) if base else None
    try:
        _vfs_walk(base_fd, rw_fd, "", out, ignore)
    finally:
        os.close(rw_fd)
        if base_fd is not None:
            os.close(base_fd)
    return out


def changes_vfs(base: str, rw: str, ignore: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """``GET /containers/{id}/changes`` for a vfs container: ``rw`` compared with the image's
    top layer dir ``base`` ("" for an image without layers). A dir holding changes is modified.
    ``ignore``: relative paths the driver added to the copy itself (see ``_vfs_walk``).
    """
    return _to_api(_vfs_changes(base, rw, ignore))


def write_layer_tar_vfs(base: str, rw: str, out: BinaryIO, ignore: frozenset[str] = frozenset(),
                        mtime_clamp: int | None = None) -> None:
    """The vfs changes as an image layer tar: changed entries with contents, deletions as
    ``.wh.`` files (one per deleted dir, nothing below it)."""
    children: dict[str, list[tuple[str, int]]] = {}
    for rel, kind in _vfs_changes(base, rw, ignore):
        parent, name = posixpath.split(rel)
        children.setdefault(parent, []).append((name, kind))
    rw_fd = open_root(rw)
    try:
        with TarTreeWriter(out, mtime_clamp) as w:
            _vfs_emit(w, rw_fd, "", children)
    finally:
        os.close(rw_fd)


def _vfs_emit(w: TarTreeWriter, fd: int, rel: str, children: dict[str, list[tuple[str, int]]]) -> None:
    for name, kind in children.get(rel, []):
        crel = _join(rel, name)
        if kind == DELETED:
            w.empty_file(_join(rel, WH_PREFIX + name))
            continue
        st = lstat_at(fd, name)
        if st is None or not w.entry(crel, fd, name, st):
            continue  # gone since the comparison
        if stat.S_ISDIR(st.st_mode) and crel in children:
            child = open_child_dir(fd, name)
            if child is None:
                continue
            try:
                _vfs_emit(w, child, crel, children)
            finally:
                os.close(child)
