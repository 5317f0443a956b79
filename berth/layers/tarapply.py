"""Apply a layer tar to a directory, safely, and reproduce the tar byte-for-byte later.

Safety: we never use ``tarfile.extract*``. Every entry's path is cleaned and checked
lexically (no ``..`` escape), then its parent is resolved component by component inside
the root, with any symlink met on the way resolved *inside the root* (as a chroot would),
so no entry can create, follow or link to anything outside ``root``. Relative symlinks and
hardlinks whose target climbs above the root are refused, as Docker refuses them.

Whiteouts: ``.wh.NAME`` and ``.wh..wh..opq`` become overlayfs whiteouts (a 0:0 char device,
the ``trusted.overlay.opaque`` xattr) for the overlay driver, or deletions for vfs, whose
layer directory is a full copy of its parent.

Tar-split: image layers are identified by the sha256 of their *uncompressed tar* (the diff
ID), so ``docker save`` must give back the very bytes that were loaded. Like Docker's
tar-split we keep the tar's headers and padding (small, compressible) and point at the
extracted files for the contents; ``assemble`` rebuilds the original stream.
"""

from __future__ import annotations

import errno
import gzip
import os
import posixpath
import stat
import struct
import tarfile
from collections.abc import Iterator
from typing import BinaryIO, Literal

from berth.errors import InvalidParameter

WhiteoutMode = Literal["overlay", "vfs", "plain"]  # plain: .wh. names are ordinary files
WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
_MAX_SYMLINK_HOPS = 40
_COPY_BUF = 1 << 20

# tar-split record kinds
_RAW = 0
_FILE = 1


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


def resolve_in_root(root: str, rel: str, follow_last: bool = False) -> str:
    """Host path for ``rel`` under ``root`` with symlinks resolved as if ``root`` were ``/``.

    Every component except (unless ``follow_last``) the last is guaranteed to be a real
    directory or missing; the result always lies under ``root``.
    """
    parts = [p for p in rel.split("/") if p and p != "."]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        is_last = not parts
        candidate = os.path.join(root, *resolved, part)
        if is_last and not follow_last:
            resolved.append(part)
            break
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > _MAX_SYMLINK_HOPS:
                raise UnsafeTarError(f"too many levels of symbolic links resolving {rel!r}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _ensure_dirs(root: str, rel_dir: str) -> str:
    """Create (scoped) the directories of ``rel_dir``; return the host path."""
    path = root
    for part in [p for p in rel_dir.split("/") if p]:
        path = resolve_in_root(root, os.path.relpath(os.path.join(path, part), root), follow_last=True)
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(path)
                os.mkdir(path, 0o755)
        except FileNotFoundError:
            # every existing component of ``path`` is a real directory under root
            os.makedirs(path, 0o755, exist_ok=True)
    return path


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        from berth.fsutil import remove_tree

        remove_tree(path)
    else:
        os.unlink(path)


class _Split:
    """Collects tar-split records: raw header/padding bytes and references to files."""

    def __init__(self, tar: BinaryIO) -> None:
        self.tar = tar
        self.records: list[tuple[int, object]] = []
        self.pos = 0
        self.file_index: dict[str, int] = {}

    def raw_until(self, end: int) -> None:
        if end > self.pos:
            self.tar.seek(self.pos)
            self.records.append((_RAW, self.tar.read(end - self.pos)))
            self.pos = end

    def file(self, rel: str, offset: int, size: int) -> None:
        self.raw_until(offset)
        self.inline(rel)
        self.file_index[rel] = len(self.records)
        self.records.append((_FILE, (rel, size, offset)))
        self.pos = offset + size

    def inline(self, rel: str) -> None:
        """``rel`` is about to change on disk: keep its earlier contents in the split itself."""
        i = self.file_index.pop(rel, None)
        if i is not None:
            _kind, (_r, size, offset) = self.records[i]  # type: ignore[misc]
            self.tar.seek(offset)
            self.records[i] = (_RAW, self.tar.read(size))

    def inline_under(self, rel_dir: str) -> None:
        prefix = rel_dir + "/" if rel_dir else ""
        for rel in [r for r in self.file_index if r.startswith(prefix) or r == rel_dir]:
            self.inline(rel)

    def write(self, out: BinaryIO, end: int) -> None:
        self.raw_until(end)
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz:
            for kind, val in self.records:
                if kind == _RAW:
                    data = val  # type: ignore[assignment]
                    gz.write(struct.pack(">BQ", _RAW, len(data)))  # type: ignore[arg-type]
                    gz.write(data)  # type: ignore[arg-type]
                else:
                    rel, size, _off = val  # type: ignore[misc]
                    enc = rel.encode("utf-8", "surrogateescape")
                    gz.write(struct.pack(">BQQ", _FILE, len(enc), size))
                    gz.write(enc)


def apply_tar(tar_path: str, root: str, mode: WhiteoutMode, split_out: BinaryIO | None = None) -> int:
    """Extract the uncompressed tar at ``tar_path`` into ``root``; return bytes of file data.

    Raises ``UnsafeTarError`` for hostile or malformed archives; the caller discards ``root``.
    """
    written: set[str] = set()
    dir_times: list[tuple[str, tarfile.TarInfo]] = []
    opaque_dirs: list[str] = []
    total = 0
    with open(tar_path, "rb") as raw, open(tar_path, "rb") as split_src:
        split = _Split(split_src) if split_out is not None else None
        try:
            tf = tarfile.open(fileobj=raw, mode="r:")
        except tarfile.TarError as e:
            raise UnsafeTarError(f"invalid tar archive: {e}") from e
        try:
            for m in _members(tf):
                rel = clean_name(m.name)
                if rel == "":
                    if m.isdir():
                        dir_times.append((root, m))
                    continue
                parent_rel, base = posixpath.split(rel)
                # every path below is the *resolved* one (symlinks followed inside root), so what we
                # record, clear or reopen later is the very file we wrote, never a path through a link
                if base.startswith(WH_PREFIX) and mode != "plain":
                    parent = _ensure_dirs(root, parent_rel)
                    if base == WH_OPAQUE:
                        opaque_dirs.append(os.path.relpath(parent, root))
                        if mode == "overlay":
                            os.setxattr(parent, "trusted.overlay.opaque", b"y")
                    elif not base.startswith(WH_PREFIX + WH_PREFIX):
                        victim = base[len(WH_PREFIX):]
                        if victim in ("", ".", ".."):
                            raise UnsafeTarError(f"invalid whiteout {m.name!r}")
                        target = os.path.join(parent, victim)
                        if split:
                            split.inline_under(os.path.relpath(target, root))
                        _remove(target)
                        if mode == "overlay":
                            os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))
                    continue
                parent = _ensure_dirs(root, parent_rel)
                path = os.path.join(parent, base)
                res_rel = os.path.relpath(path, root)
                written.add(res_rel)
                if split:
                    split.inline_under(res_rel) if not m.isdir() else split.inline(res_rel)
                total += _create(tf, m, root, rel, path)
                if m.isreg() and split:
                    split.file(res_rel, m.offset_data, m.size)
                if m.isdir():
                    dir_times.append((path, m))
        except tarfile.TarError as e:
            raise UnsafeTarError(f"invalid tar archive: {e}") from e
        except EOFError as e:
            raise UnsafeTarError("invalid tar archive: unexpected end of data") from e
        if mode == "vfs":
            for d in opaque_dirs:
                _clear_unwritten(root, d, written)
        for path, m in reversed(dir_times):
            _set_times(path, m)
        if split and split_out is not None:
            split.write(split_out, os.fstat(raw.fileno()).st_size)
    return total


def _members(tf: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        m = tf.next()
        if m is None:
            return
        yield m


def _create(tf: tarfile.TarFile, m: tarfile.TarInfo, root: str, rel: str, path: str) -> int:
    size = 0
    existing = None
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        pass
    if m.isdir():
        if existing is not None and not stat.S_ISDIR(existing.st_mode):
            os.unlink(path)
            existing = None
        if existing is None:
            os.mkdir(path, 0o700)
    else:
        if existing is not None:
            _remove(path)
        if m.isreg():
            src = tf.extractfile(m)
            assert src is not None
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as dst:
                remaining = m.size
                while remaining:
                    chunk = src.read(min(_COPY_BUF, remaining))
                    if not chunk:
                        raise UnsafeTarError("invalid tar archive: unexpected end of data")
                    dst.write(chunk)
                    remaining -= len(chunk)
            size = m.size
        elif m.issym():
            target = m.linkname
            if not target.startswith("/"):
                lexical = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
                if lexical == ".." or lexical.startswith("../"):
                    raise UnsafeTarError(
                        f"invalid symlink {m.name!r} -> {target!r}: target escapes the layer root")
            os.symlink(target, path)
            size = len(os.fsencode(target))  # lstat size, which Docker's size accounting counts too
        elif m.islnk():
            link_rel = clean_name(m.linkname)
            link_parent, link_base = posixpath.split(link_rel)
            src_path = os.path.join(resolve_in_root(root, link_parent, follow_last=True), link_base)
            try:
                st = os.lstat(src_path)
            except FileNotFoundError as e:
                raise UnsafeTarError(f"invalid hardlink {m.name!r}: target {m.linkname!r} not in layer") from e
            if stat.S_ISDIR(st.st_mode):
                raise UnsafeTarError(f"invalid hardlink {m.name!r}: target is a directory")
            os.link(src_path, path, follow_symlinks=False)
            return 0  # hardlinks share the target's metadata
        elif m.ischr() or m.isblk() or m.isfifo():
            if m.isfifo():
                os.mkfifo(path, 0o600)
            elif os.geteuid() == 0:
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
                os.mknod(path, kind | 0o600, os.makedev(m.devmajor, m.devminor))
            else:
                return 0  # device nodes need privilege; skip them as Docker does rootless
        else:
            raise UnsafeTarError(f"invalid tar entry {m.name!r}: unsupported type {m.type!r}")
    _set_meta(path, m)
    return size


def _set_meta(path: str, m: tarfile.TarInfo) -> None:
    try:
        os.lchown(path, m.uid, m.gid)
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EINVAL):
            raise
    for key, val in m.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            name = key[len("SCHILY.xattr."):]
            if name.startswith("trusted.overlay."):
                continue  # never let an archive forge overlay metadata
            try:
                os.setxattr(path, name, val.encode("utf-8", "surrogateescape"), follow_symlinks=False)
            except OSError:
                pass
    if not m.issym():
        os.chmod(path, m.mode & 0o7777)
        if not m.isdir():
            _set_times(path, m)
    else:
        _set_times(path, m)


def _set_times(path: str, m: tarfile.TarInfo) -> None:
    mtime = float(m.pax_headers.get("mtime", m.mtime))
    atime = float(m.pax_headers.get("atime", mtime))
    try:
        os.utime(path, (atime, mtime), follow_symlinks=False)
    except OSError:
        pass


def _clear_unwritten(root: str, rel_dir: str, written: set[str]) -> None:
    """vfs opaque dir: drop what the lower layers put there. ``rel_dir`` is resolved (no links);
    symlinks met here are removed as links, never followed."""
    base = os.path.join(root, rel_dir) if rel_dir not in ("", ".") else root
    with os.scandir(base) as it:
        entries = list(it)
    for entry in entries:
        rel = posixpath.join(rel_dir, entry.name) if rel_dir not in ("", ".") else entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if rel in written or any(w.startswith(rel + "/") for w in written):
            if is_dir:
                _clear_unwritten(root, rel, written)
            continue
        _remove(entry.path)


def assemble(root: str, split_in: BinaryIO, out: BinaryIO) -> None:
    """Write the original tar stream from tar-split metadata and the extracted files."""
    with gzip.GzipFile(fileobj=split_in, mode="rb") as gz:
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
                fd = os.open(resolve_in_root(root, rel), os.O_RDONLY | os.O_NOFOLLOW)
                with os.fdopen(fd, "rb") as f:
                    _copy_exact(f, out, size)
                    if f.read(1):
                        raise ValueError(f"{rel}: layer content is longer than recorded; the layer store is damaged")
            else:
                raise ValueError("corrupt tar-split metadata")


def _copy_exact(src: BinaryIO, dst: BinaryIO, n: int) -> None:
    while n:
        chunk = src.read(min(_COPY_BUF, n))
        if not chunk:
            raise ValueError("layer content is shorter than recorded; the layer store is damaged")
        dst.write(chunk)
        n -= len(chunk)
