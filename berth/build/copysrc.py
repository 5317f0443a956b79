"""COPY/ADD sources: what a copy writes, its cache checksum, and the tar that writes it.

Semantics are dockerd's classic builder's (the Dockerfile reference, "COPY" and "ADD"):

- a source path is relative to the source root (the context, or another stage's / image's rootfs
  for `COPY --from`); a leading "/" or "./" is dropped; a path that climbs out lexically ("../x")
  is refused; symlinks on the way, and a source that is itself a symlink, resolve inside the
  source root as if it were "/" (openat2 RESOLVE_IN_ROOT), never on the host;
- wildcards are Go's filepath.Match, matched against every path of the source root;
- a directory source copies its contents; symlinks inside it stay symlinks;
- with more than one source the destination must end in "/"; a file goes *into* the destination
  when it ends in "/" or is an existing directory in the target rootfs, else it *is* the
  destination; a relative destination is relative to WORKDIR;
- ADD unpacks a local tar (plain, gzip, bzip2, xz, zstd) into the destination; COPY never does
  (berth/build/copyarchive.py reads the tar);
- ownership: `--chown` (names looked up in the target's /etc/passwd and /etc/group, read by fd
  inside its rootfs), else 0:0, except `COPY --from` without `--chown` keeps the source's.

Blocking; call through asyncio.to_thread.
"""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from berth import safepath
from berth.build.copyarchive import archive_entries, spool_archive
from berth.build.copyowner import parse_chmod, resolve_chown
from berth.build.copyplan import CopyEntry, CopyError, CopyPlan, plan_checksum
from berth.build.globmatch import go_match, has_wildcards
from berth.build.statcache import StatCache, hash_file_at

__all__ = ["CopyError", "CopyEntry", "CopyPlan", "StatCache", "plan_copy", "go_match", "has_wildcards"]

MAX_ENTRIES = 2_000_000     # entries one COPY may plan (walk bound)
MAX_DEPTH = 1024            # directory depth walked


# ---------------------------------------------------------------------------------------------
# planning


def _is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


def normalize_dest(workdir: str, dest: str) -> tuple[str, bool]:
    """(absolute clean destination, ends in "/") — a relative destination is under WORKDIR."""
    ends = dest.endswith("/")
    full = dest if dest.startswith("/") else posixpath.join("/", workdir.lstrip("/") if workdir else "", dest)
    cleaned = posixpath.normpath("/" + full.lstrip("/"))
    return cleaned, ends


@dataclass
class _Source:
    orig: str                    # as written, "/" and "./" trimmed (names the file copied in)
    rel: str = ""                # resolved path inside the source root
    st: os.stat_result | None = None
    data: bytes | None = None    # inline


class _Planner:
    def __init__(self, src_root: str, rootfs: str, cmd: str, ident: tuple[int, int] | None,
                 mode: int | None, extract: bool, stat_cache: StatCache | None, namespace: str,
                 tmpdir: str | None) -> None:
        self.src_root = src_root
        self.root_path = os.path.realpath(src_root).rstrip("/")
        self.rootfs = rootfs
        self.cmd = cmd
        self.ident = ident
        self.mode = mode
        self.extract = extract
        self.cache = stat_cache
        self.namespace = namespace
        self.tmpdir = tmpdir
        self.entries: dict[str, CopyEntry] = {}
        self.archives: list[str] = []
        self.archive_digests: list[str] = []
        self.count = 0
        self.root_fd = os.open(src_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.rootfs_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.root_fd)
        os.close(self.rootfs_fd)

    # -- sources -------------------------------------------------------------------------------

    def sources(self, raw: str, context: bool) -> list[_Source]:
        orig = raw
        if orig.startswith("/") and len(orig) > 1:
            orig = orig[1:]
        if orig.startswith("./"):
            orig = orig[2:]
        if has_wildcards(orig):
            return [self._single(m, context) for m in self._wildcard(orig)]
        return [self._single(orig, context)]

    def _wildcard(self, pattern: str) -> list[str]:
        """Every path of the source root that the pattern matches, in walk (lexical) order."""
        depth = pattern.count("/") + 1
        prefixes = pattern.split("/")
        found: list[str] = []

        def walk(dir_fd: int, prefix: str, level: int) -> None:
            for name, st in _scan(dir_fd):
                self._tick()
                rel = prefix + name
                if level == depth:
                    if go_match(pattern, rel):
                        found.append(rel)
                    continue
                if stat.S_ISDIR(st.st_mode) and go_match("/".join(prefixes[:level]), rel):
                    child = _open_child(dir_fd, name)
                    if child is not None:
                        try:
                            walk(child, rel + "/", level + 1)
                        finally:
                            os.close(child)

        walk(self.root_fd, "", 1)
        return found

    def _single(self, orig: str, context: bool) -> _Source:
        lexical = posixpath.normpath(orig) if orig else "."
        if lexical == ".." or lexical.startswith("../"):
            raise CopyError(f"{self.cmd} failed: forbidden path outside the build context: {orig} ()")
        try:
            fd = safepath.openat2(self.root_fd, safepath.clean_rel(orig), safepath.O_PATH)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                why = f"stat {orig}: file does not exist"
                if context:
                    raise CopyError(f"{self.cmd} failed: file not found in build context or excluded "
                                    f"by .dockerignore: {why}") from None
                raise CopyError(f"{self.cmd} failed: {why}") from None
            raise CopyError(f"{self.cmd} failed: stat {orig}: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            rel = self._rel_of(fd)
        finally:
            os.close(fd)
        return _Source(orig=orig, rel=rel, st=st)

    def _rel_of(self, fd: int) -> str:
        here = safepath.fd_path(fd)
        if here == self.root_path:
            return ""
        if not here.startswith(self.root_path + "/"):
            raise CopyError(f"{self.cmd} failed: source left the build context")
        return here[len(self.root_path) + 1:]

    def _tick(self) -> None:
        self.count += 1
        if self.count > MAX_ENTRIES:
            raise CopyError(f"{self.cmd} failed: more than {MAX_ENTRIES} files to copy")

    # -- the target rootfs ---------------------------------------------------------------------

    def _target_stat(self, path: str) -> os.stat_result | None:
        """What `path` (absolute) is in the target rootfs, symlinks followed inside it."""
        rel = safepath.clean_rel(path)
        if rel == "":
            return os.fstat(self.rootfs_fd)
        try:
            fd = safepath.openat2(self.rootfs_fd, rel, safepath.O_PATH)
        except OSError as e:
            if e.errno in (errno.ENOENT,):
                return None
            if e.errno == errno.ENOTDIR:
                raise CopyError(f"failed to copy files: mkdir {path}: not a directory") from None
            raise CopyError(f"failed to copy files: stat {path}: {e.strerror}") from None
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def _parents(self, path: str, owner: tuple[int, int]) -> None:
        """Directory entries for the missing ancestors of `path` (absolute), 0755."""
        parts = [p for p in path.split("/") if p][:-1]
        cur = ""
        missing = False
        for part in parts:
            cur = cur + "/" + part
            if not missing:
                st = self._target_stat(cur)
                if st is not None:
                    if not stat.S_ISDIR(st.st_mode):
                        raise CopyError(f"failed to copy files: mkdir {cur}: not a directory")
                    continue
                missing = True
            self._put(CopyEntry(cur[1:], "dir", 0o755, owner[0], owner[1], 0), weak=True)

    def _put(self, entry: CopyEntry, weak: bool = False) -> None:
        if weak and entry.name in self.entries:
            return
        self.entries[entry.name] = entry

    # -- copying -------------------------------------------------------------------------------

    def owner(self, st: os.stat_result | None) -> tuple[int, int]:
        if self.ident is not None:
            return self.ident
        return (st.st_uid, st.st_gid) if st is not None else (0, 0)

    def perm(self, st_mode: int) -> int:
        return self.mode if self.mode is not None else stat.S_IMODE(st_mode)

    def copy(self, src: _Source, dest: str, dest_dir: bool) -> None:
        st = src.st
        if src.data is not None:
            target = self._file_target(src.orig, dest, dest_dir)
            owner = self.ident or (0, 0)
            self._parents(target, owner)
            self._put(CopyEntry(target[1:], "file", self.perm(0o644), owner[0], owner[1], 0,
                                size=len(src.data), digest=hashlib.sha256(src.data).hexdigest(), data=src.data))
            return
        assert st is not None
        if stat.S_ISDIR(st.st_mode):
            self._copy_dir(src, dest)
            return
        if stat.S_ISSOCK(st.st_mode):
            raise CopyError(f"failed to copy files: archive/tar: sockets not supported: {src.orig}")
        if stat.S_ISREG(st.st_mode) and self.extract:
            spooled = self._spool_archive(src)
            if spooled is not None:
                self._copy_archive(spooled, dest)
                return
        target = self._file_target(src.orig, dest, dest_dir)
        self._parents(target, self.ident or (0, 0))
        parent_rel, name = posixpath.split(src.rel)
        dir_fd = self._open_dir(parent_rel)
        try:
            self._node(dir_fd, name, st, target[1:], src.rel, {})
        finally:
            os.close(dir_fd)

    def _file_target(self, orig: str, dest: str, dest_dir: bool) -> str:
        if not dest_dir:
            tst = self._target_stat(dest)
            dest_dir = tst is not None and stat.S_ISDIR(tst.st_mode)
        base = posixpath.basename(orig.rstrip("/")) or orig
        return posixpath.join(dest, base) if dest_dir else dest

    def _open_dir(self, rel: str) -> int:
        return safepath.openat2(self.root_fd, rel, os.O_RDONLY | os.O_DIRECTORY)

    def _copy_dir(self, src: _Source, dest: str) -> None:
        tst = self._target_stat(dest)
        if tst is not None and not stat.S_ISDIR(tst.st_mode):
            raise CopyError(f"failed to copy files: cannot copy to non-directory: {dest}")
        if dest != "/":
            self._parents(dest, (0, 0))
            if tst is None:
                owner = self.ident or (0, 0)
                self._put(CopyEntry(dest[1:], "dir", self.mode if self.mode is not None else 0o755,
                                    owner[0], owner[1], 0))
        dir_fd = self._open_dir(src.rel)
        try:
            links: dict[tuple[int, int], str] = {}
            self._tree(dir_fd, src.rel, dest[1:], links, 0)
        finally:
            os.close(dir_fd)

    def _tree(self, dir_fd: int, src_rel: str, dst_rel: str, links: dict[tuple[int, int], str], depth: int) -> None:
        if depth > MAX_DEPTH:
            raise CopyError(f"{self.cmd} failed: directory tree deeper than {MAX_DEPTH}")
        for name, st in _scan(dir_fd):
            self._tick()
            s_rel = f"{src_rel}/{name}" if src_rel else name
            d_rel = f"{dst_rel}/{name}" if dst_rel else name
            if not self._node(dir_fd, name, st, d_rel, s_rel, links):
                continue
            if stat.S_ISDIR(st.st_mode):
                child = _open_child(dir_fd, name)
                if child is not None:
                    try:
                        self._tree(child, s_rel, d_rel, links, depth + 1)
                    finally:
                        os.close(child)

    def _node(self, dir_fd: int, name: str, st: os.stat_result, d_rel: str, s_rel: str,
              links: dict[tuple[int, int], str]) -> bool:
        uid, gid = self.owner(st)
        fmt = stat.S_IFMT(st.st_mode)
        mtime = st.st_mtime_ns
        if fmt == stat.S_IFDIR:
            self._put(CopyEntry(d_rel, "dir", self.perm(st.st_mode), uid, gid, mtime))
            return True
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            self._put(CopyEntry(d_rel, "hardlink", self.perm(st.st_mode), uid, gid, mtime, linkname=links[key]))
            return True
        if fmt == stat.S_IFLNK:
            target = os.readlink(name, dir_fd=dir_fd)
            self._put(CopyEntry(d_rel, "symlink", 0o777, uid, gid, mtime, linkname=target))
        elif fmt == stat.S_IFREG:
            if self.cache is not None:
                digest = self.cache.digest(self.namespace, s_rel, dir_fd, name, st)
            else:
                digest = hash_file_at(dir_fd, name, st)
            self._put(CopyEntry(d_rel, "file", self.perm(st.st_mode), uid, gid, mtime,
                                size=st.st_size, digest=digest, src=s_rel))
        elif fmt in (stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK):
            kind = {stat.S_IFIFO: "fifo", stat.S_IFCHR: "char", stat.S_IFBLK: "block"}[fmt]
            rdev = (os.major(st.st_rdev), os.minor(st.st_rdev)) if kind != "fifo" else (0, 0)
            self._put(CopyEntry(d_rel, kind, self.perm(st.st_mode), uid, gid, mtime, rdev=rdev))
        else:
            return False  # sockets: tar cannot hold them; skipped inside directories as Docker does
        if st.st_nlink > 1:
            links[key] = d_rel
        return True

    # -- ADD of a local archive (berth/build/copyarchive.py reads it) ----------------------------

    def _spool_archive(self, src: _Source) -> str | None:
        """Decompress `src` to a private file if it is a tar (as dockerd's isArchivePath); else None."""
        assert src.st is not None
        spooled = spool_archive(self.root_fd, src.rel, src.orig, self.cmd, self.tmpdir)
        if spooled is None:
            return None
        path, digest = spooled
        self.archives.append(path)
        self.archive_digests.append(digest)
        return path

    def _copy_archive(self, path: str, dest: str) -> None:
        index = len(self.archives) - 1
        tst = self._target_stat(dest)
        if tst is not None and not stat.S_ISDIR(tst.st_mode):
            raise CopyError(f"failed to copy files: cannot copy to non-directory: {dest}")
        if dest != "/":
            self._parents(dest, (0, 0))
            if tst is None:
                self._put(CopyEntry(dest[1:], "dir", 0o755, 0, 0, 0))
        for entry in archive_entries(path, index, dest[1:], self.cmd, self._tick):
            self._put(entry)


def _scan(dir_fd: int) -> list[tuple[str, os.stat_result]]:
    out: list[tuple[str, os.stat_result]] = []
    with os.scandir(dir_fd) as it:
        for entry in it:
            try:
                out.append((entry.name, entry.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue
    out.sort(key=lambda item: os.fsencode(item[0]))
    return out


def _open_child(dir_fd: int, name: str) -> int | None:
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None


def plan_copy(src_root: str, sources: list[str], dest: str, *, workdir: str, rootfs: str,
              chown: str | None, chmod: str | None, add: bool = False,
              stat_cache: StatCache | None = None, from_stage: bool = False,
              extract: bool | None = None, inline: Sequence[tuple[str, bytes]] = (),
              tmpdir: str | None = None, cache_namespace: str | None = None) -> CopyPlan:
    """Plan a COPY (or ADD) of `sources` from `src_root` to `dest` in the rootfs `rootfs`.

    `from_stage`: the sources are another stage's or image's rootfs (COPY --from): Docker's
    not-found wording differs and, without --chown, ownership is kept. `extract`: unpack local
    tars (default: for ADD). `inline`: (name, content) files, for COPY/ADD heredocs.
    """
    cmd = "ADD" if add else "COPY"
    for s in sources:
        if _is_url(s):
            raise CopyError("source can't be a URL for COPY" if not add
                            else "ADD from a URL is fetched by the caller, not planned here")
    ident: tuple[int, int] | None
    if chown:
        ident = resolve_chown(chown, rootfs)
    else:
        ident = None if from_stage else (0, 0)
    mode = parse_chmod(chmod) if chmod else None
    planner = _Planner(src_root, rootfs, cmd, ident, mode, add if extract is None else extract,
                       stat_cache, cache_namespace if cache_namespace is not None else src_root, tmpdir)
    try:
        resolved: list[_Source] = []
        for s in sources:
            resolved += planner.sources(s, context=not from_stage)
        resolved += [_Source(orig=name, data=data) for name, data in inline]
        if not resolved:
            raise CopyError(f"{cmd} failed: no source files were specified")
        if len(resolved) > 1 and not dest.endswith("/"):
            raise CopyError(f"When using {cmd} with more than one source file, "
                            "the destination must be a directory and end with a /")
        target, dest_dir = normalize_dest(workdir, dest)
        for src in resolved:
            planner.copy(src, target, dest_dir)
        entries = sorted(planner.entries.values(), key=lambda e: os.fsencode(e.name))
        plan = CopyPlan(checksum=plan_checksum(entries, planner.archive_digests), entries=entries,
                        src_root=src_root, archives=planner.archives, archive_digests=planner.archive_digests)
    except BaseException:
        for path in planner.archives:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        raise
    finally:
        planner.close()
    if stat_cache is not None:
        stat_cache.save()
    return plan
