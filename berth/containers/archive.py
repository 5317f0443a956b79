"""``docker cp`` and ``docker export`` primitives: stat, tar and untar paths inside a container rootfs.

Safety (CVE-2018-15664): the rootfs belongs to the container, which may rewrite it while we
work. Every path is opened with ``openat2(RESOLVE_IN_ROOT)`` from a descriptor on the rootfs
(``berth.safepath``): symlinks mean what they mean *inside* the container, in one atomic kernel
walk. Trees are then walked, and archives extracted, with ``*at()`` calls on directory
descriptors. A directory swapped for a symlink mid-operation can change which entry inside the
container we reach; it can never lead us to a host file.

``TarTreeWriter`` (the descriptor-based tar writer) is shared with ``berth.layers.diff`` for layer tars.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO

from berth import safepath
from berth.errors import Conflict, InvalidParameter, NotFound
from berth.layers.tarapply import apply_tar_fd, clean_name
from berth.safepath import lstat_at
from berth.tartree import TarTreeWriter, open_child_dir, open_root

# Go's os.FileMode bits, which Docker serialises as the "mode" of a path stat
GO_MODE_DIR = 1 << 31
GO_MODE_APPEND = 1 << 30
GO_MODE_EXCLUSIVE = 1 << 29
GO_MODE_TEMPORARY = 1 << 28
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_NAMED_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24
GO_MODE_SETUID = 1 << 23
GO_MODE_SETGID = 1 << 22
GO_MODE_CHAR_DEVICE = 1 << 21
GO_MODE_STICKY = 1 << 20

# ---------------------------------------------------------------------------------------------
# path stat and archives


def go_file_mode(st_mode: int) -> int:
    """A POSIX st_mode as Go's os.FileMode (what Docker puts in a path stat)."""
    mode = stat.S_IMODE(st_mode) & 0o777
    fmt = stat.S_IFMT(st_mode)
    mode |= {stat.S_IFDIR: GO_MODE_DIR, stat.S_IFLNK: GO_MODE_SYMLINK, stat.S_IFIFO: GO_MODE_NAMED_PIPE,
             stat.S_IFSOCK: GO_MODE_SOCKET, stat.S_IFBLK: GO_MODE_DEVICE,
             stat.S_IFCHR: GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE}.get(fmt, 0)
    if st_mode & stat.S_ISUID:
        mode |= GO_MODE_SETUID
    if st_mode & stat.S_ISGID:
        mode |= GO_MODE_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= GO_MODE_STICKY
    return mode


def rfc3339_nano(mtime_ns: int) -> str:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction dropped."""
    secs, nanos = divmod(mtime_ns, 1_000_000_000)
    text = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"


@dataclass
class _Target:
    root_fd: int
    parent_fd: int  # directory holding the object
    name: str  # its name there; "." for the rootfs itself
    rel: str  # path inside the rootfs, "" for "/"
    st: os.stat_result

    def close(self) -> None:
        os.close(self.parent_fd)
        os.close(self.root_fd)

    def open_dir(self) -> int:
        if self.name == ".":
            return os.dup(self.parent_fd)
        fd = open_child_dir(self.parent_fd, self.name)
        if fd is None:
            raise Conflict(f"{self.rel or '/'} changed while it was being read")
        return fd


def _wants_dir(path: str) -> bool:
    """Docker follows the last symlink (and requires a directory) for "x/" and "x/."."""
    return path.endswith("/") or path.endswith("/.") or path in ("", ".")


def _locate(rootfs: str, path: str, follow_last: bool, container_name: str) -> _Target:
    missing = NotFound(f"Could not find the file {path} in container {container_name}")
    root_fd = open_root(rootfs)
    try:
        rel = safepath.resolve_rel(root_fd, path, follow_last=follow_last)
        parent_rel, name = posixpath.split(rel) if rel else ("", ".")
        parent_fd = safepath.open_dir_in_root(root_fd, parent_rel)
    except OSError as e:
        os.close(root_fd)
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise missing from None
        if e.errno in (errno.ELOOP, errno.EXDEV, errno.EAGAIN):
            raise Conflict(f"{path} changed while it was being resolved") from None
        raise
    st = lstat_at(parent_fd, name)
    if st is None:
        os.close(parent_fd)
        os.close(root_fd)
        raise missing
    return _Target(root_fd, parent_fd, name, rel, st)


def stat_path(rootfs: str, path: str, container_name: str = "") -> dict[str, Any]:
    """Docker's ``X-Docker-Container-Path-Stat`` object for ``path`` in the container.

    Like Docker, ``linkTarget`` of a symlink is the path it finally resolves to inside the
    container (what ``docker cp -L`` copies), not the raw link text.
    """
    want_dir = _wants_dir(path)
    t = _locate(rootfs, path, want_dir, container_name)
    try:
        if want_dir and not stat.S_ISDIR(t.st.st_mode):
            raise InvalidParameter(f"{path}: not a directory")
        link_target = ""
        if stat.S_ISLNK(t.st.st_mode):
            link_target = "/" + safepath.resolve_rel(t.root_fd, t.rel, follow_last=True)
        return {"name": _base_name(path), "size": t.st.st_size, "mode": go_file_mode(t.st.st_mode),
                "mtime": rfc3339_nano(t.st.st_mtime_ns), "linkTarget": link_target}
    finally:
        t.close()


def _base_name(path: str) -> str:
    """Go's filepath.Base of the requested (absolute) path: "/etc/" → "etc", "/x/." → "."."""
    if path.endswith("/."):
        return "."
    stripped = posixpath.normpath("/" + path.lstrip("/"))  # lstrip: normpath keeps a leading "//"
    return posixpath.basename(stripped) or "/"


def write_archive(rootfs: str, path: str, out: BinaryIO, container_name: str = "") -> None:
    """Tar of ``path`` for ``GET /containers/{id}/archive`` (uncompressed, streamed to ``out``).

    A file gives one entry named by its basename, a directory ``<basename>/...``; "dir/." (and
    "/") give the directory's contents alone. Symlinks are archived as links, never followed,
    except a final one when the path ends with "/" or "/.".
    """
    want_dir = _wants_dir(path)
    t = _locate(rootfs, path, want_dir, container_name)
    try:
        is_dir = stat.S_ISDIR(t.st.st_mode)
        if want_dir and not is_dir:
            raise InvalidParameter(f"{path}: not a directory")
        top = _base_name(path)
        contents_only = top in (".", "/")
        with TarTreeWriter(out) as w:
            if not contents_only:
                # entries are named after the *requested* name: "/lnk/" archives as "lnk/..."
                w.entry(top, t.parent_fd, t.name, t.st)
            if is_dir:
                fd = t.open_dir()
                try:
                    w.tree("" if contents_only else top + "/", fd)
                finally:
                    os.close(fd)
    finally:
        t.close()


def extract_archive(rootfs: str, path: str, tar_path: str, no_overwrite_dir_non_dir: bool = False,
                    container_name: str = "") -> None:
    """``PUT /containers/{id}/archive``: extract the tar at ``tar_path`` into directory ``path``.

    The target directory is opened inside the container's root, and every entry is then made
    through descriptors resolved inside that directory (``apply_tar_fd``), so a container that
    swaps directories for symlinks while we write cannot redirect a single byte to the host.
    """
    t = _locate(rootfs, path, True, container_name)
    try:
        if not stat.S_ISDIR(t.st.st_mode):
            raise InvalidParameter("extraction point is not a directory")
        target_fd = t.open_dir()
    finally:
        t.close()
    try:
        if no_overwrite_dir_non_dir:
            _check_dir_non_dir(target_fd, tar_path)
        apply_tar_fd(tar_path, target_fd, "plain", None)
    finally:
        os.close(target_fd)


def _check_dir_non_dir(target_fd: int, tar_path: str) -> None:
    """Refuse an archive that would replace a directory by a non-directory or the reverse.

    Checked before anything is written; entries earlier in the archive count as created.
    """
    planned: dict[str, bool | None] = {}  # rel → is_dir as the archive leaves it; None: a symlink

    def is_dir(rel: str, follow: bool) -> bool | None:
        if rel in planned:
            return planned[rel]
        # parents: apply_tar walks through symlinks to directories; the entry itself is not followed
        try:
            fd = safepath.open_in_root(target_fd, rel, safepath.O_PATH, follow=follow)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                return None
            raise
        try:
            return stat.S_ISDIR(os.fstat(fd).st_mode)
        finally:
            os.close(fd)

    try:
        with tarfile.open(tar_path, mode="r:") as tf:
            for m in tf:
                rel = clean_name(m.name)
                if not rel:
                    continue
                parts = rel.split("/")
                for i in range(1, len(parts)):
                    parent = "/".join(parts[:i])
                    if is_dir(parent, follow=True) is False:  # apply_tar would replace it by a directory
                        raise InvalidParameter(f'cannot overwrite non-directory "/{parent}" with directory "/{rel}"')
                    planned.setdefault(parent, True)
                existing = is_dir(rel, follow=False)
                if existing is True and not m.isdir():
                    raise InvalidParameter(f'cannot overwrite directory "/{rel}" with non-directory "/{rel}"')
                if existing is False and m.isdir():
                    raise InvalidParameter(f'cannot overwrite non-directory "/{rel}" with directory "/{rel}"')
                planned[rel] = None if m.issym() else m.isdir()
    except tarfile.TarError as e:
        raise InvalidParameter(f"invalid tar archive: {e}") from e


def export_rootfs(rootfs: str, out: BinaryIO) -> None:
    """``docker export``: the whole (mounted) rootfs as a tar, relative names, sorted."""
    fd = open_root(rootfs)
    try:
        with TarTreeWriter(out) as w:
            w.tree("", fd)
    finally:
        os.close(fd)
