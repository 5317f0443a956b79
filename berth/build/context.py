"""The build context: a tar body unpacked into a private directory, and the Dockerfile in it.

Blocking (call through asyncio.to_thread). The tar is extracted with berth's descriptor-based
extractor (berth.layers.tarapply: entries never leave the root, symlinks stay symlinks); the
Dockerfile is opened with openat2(RESOLVE_IN_ROOT), so a symlinked Dockerfile resolves inside
the context as if it were "/", never on the host.
"""

from __future__ import annotations

import bz2
import errno
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from typing import IO

from berth import gz, safepath
from berth.build.dockerignore import Matcher, PatternError, read_patterns
from berth.layers.tarapply import UnsafeTarError, apply_tar

__all__ = ["ContextError", "BuildContext", "MAX_DOCKERFILE", "MAX_CONTEXT", "decompressor", "tar_header_valid"]

MAX_DOCKERFILE = 16 * 1024 * 1024   # bytes of Dockerfile (and of .dockerignore) read
MAX_CONTEXT = 64 * 1024 ** 3        # uncompressed context bytes spooled to disk
MAX_WALK = 2_000_000                # entries visited when applying .dockerignore
_BUF = 1 << 20
_DEFAULT_DOCKERFILE = "Dockerfile"


class ContextError(Exception):
    """A context Docker would refuse; str() is Docker's wording."""


def decompressor(head: bytes, f: IO[bytes]) -> tuple[str, IO[bytes]] | None:
    """(format name, decompressing reader) for a compressed stream, None for plain data."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip", gz.open_reader(f)
    if head.startswith(b"BZh"):
        return "bzip2", bz2.BZ2File(f)
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz", lzma.LZMAFile(f)
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        import zstandard

        return "zstd", zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
    return None


def tar_header_valid(block: bytes) -> bool:
    """Does this 512-byte block start a tar as Go's archive/tar reads one (checksum right)?"""
    if len(block) < 512 or block == b"\0" * 512:
        return False
    try:
        recorded = int(block[148:156].replace(b"\0", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:512])
    signed = sum((b - 256 if b > 127 else b) for b in block[:148]) + 8 * 32 + sum(
        (b - 256 if b > 127 else b) for b in block[156:512])
    return recorded in (unsigned, signed)


def _check_tar_start(path: str) -> bool:
    """Is the file a tar as Go's archive/tar reads it? False for an empty body (an empty context);
    ContextError with Go's wording for a short or non-tar body."""
    with open(path, "rb") as f:
        block = f.read(512)
    if not block or block == b"\0" * 512:
        return False
    if len(block) < 512:
        raise ContextError("unexpected EOF")
    if not tar_header_valid(block):
        raise ContextError("archive/tar: invalid tar header")
    return True


def _pad_truncated_tar(path: str, size: int) -> None:
    """Complete a tar cut inside the last entry's padding; "unexpected EOF" if data is missing."""
    with open(path, "ab") as f:
        f.write(b"\0" * (512 - size % 512) + b"\0" * 1024)
    try:
        with tarfile.open(path, "r:") as tf:
            while (m := tf.next()) is not None:
                tf.members.clear()  # type: ignore[attr-defined]  # headers only; keep none
                if m.isreg() and m.offset_data + m.size > size:
                    raise ContextError("unexpected EOF")
    except tarfile.TarError:
        raise ContextError("archive/tar: invalid tar header") from None


class BuildContext:
    """A context directory this object owns; close() removes it."""

    def __init__(self, root: str) -> None:
        self.root = root

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def empty(cls, workdir: str) -> BuildContext:
        """A context with nothing in it (`docker build -` with a Dockerfile on stdin)."""
        return cls(tempfile.mkdtemp(prefix="ctx-", dir=workdir))

    @classmethod
    def from_tar(cls, tar_path: str, workdir: str, *, max_size: int = MAX_CONTEXT) -> BuildContext:
        """Unpack a context tar (plain, gzip, bzip2, xz or zstd, detected by magic bytes)."""
        root = tempfile.mkdtemp(prefix="ctx-", dir=workdir)
        spool: str | None = None
        try:
            with open(tar_path, "rb") as raw:
                head = raw.read(6)
                raw.seek(0)
                dec = decompressor(head, raw)
                if dec is not None:
                    fmt, reader = dec
                    fd, spool = tempfile.mkstemp(prefix="ctx-", suffix=".tar", dir=workdir)
                    with os.fdopen(fd, "wb") as out:
                        _copy_bounded(reader, out, max_size, fmt)
            plain = spool or tar_path
            if _check_tar_start(plain):
                size = os.path.getsize(plain)
                if size % 512:
                    # The docker CLI's `-f -` context ends right after the last entry's data (no
                    # padding, no end-of-archive blocks); Go's tar reader takes that as the end.
                    if spool is None:
                        fd, spool = tempfile.mkstemp(prefix="ctx-", suffix=".tar", dir=workdir)
                        with os.fdopen(fd, "wb") as out, open(tar_path, "rb") as src:
                            shutil.copyfileobj(src, out, _BUF)
                        plain = spool
                    _pad_truncated_tar(plain, size)
                try:
                    apply_tar(plain, root, "plain")
                except UnsafeTarError as e:
                    raise ContextError(str(e)) from None
                except OSError as e:
                    raise ContextError(f"failed to unpack the build context: {e.strerror}") from None
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        finally:
            if spool is not None:
                os.unlink(spool)
        return cls(root)

    # -- the Dockerfile ------------------------------------------------------------------------

    def _open_root(self) -> int:
        return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def _read_in_root(self, rel: str, limit: int) -> bytes | None:
        """Contents of a regular file inside the context (symlinks resolved inside), None if missing."""
        root_fd = self._open_root()
        try:
            try:
                fd = safepath.openat2(root_fd, safepath.clean_rel(rel), os.O_RDONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.ENOTDIR):
                    return None
                raise ContextError(f"open {rel}: {e.strerror.lower() if e.strerror else e}") from None
            try:
                st = os.fstat(fd)
                if stat.S_ISDIR(st.st_mode):
                    raise ContextError(f"read {rel}: is a directory")
                if not stat.S_ISREG(st.st_mode):
                    raise ContextError(f"{rel} is not a regular file")
                if st.st_size > limit:
                    raise ContextError(f"{rel} is larger than {limit} bytes")
                chunks: list[bytes] = []
                total = 0
                while True:
                    chunk = os.read(fd, _BUF)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > limit:
                        raise ContextError(f"{rel} is larger than {limit} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
            finally:
                os.close(fd)
        finally:
            os.close(root_fd)

    def dockerfile(self, name: str = "") -> str:
        """The text of the named Dockerfile; "Dockerfile" falls back to "dockerfile" as dockerd does."""
        name = name or _DEFAULT_DOCKERFILE
        lexical = posixpath.normpath(name.lstrip("/")) if name.strip("/") else "."
        if lexical == ".." or lexical.startswith("../"):
            raise ContextError(f"forbidden path outside the build context: {name} ()")
        data = self._read_in_root(name, MAX_DOCKERFILE)
        if data is None and name == _DEFAULT_DOCKERFILE:
            data = self._read_in_root(name.lower(), MAX_DOCKERFILE)
        if data is None:
            raise ContextError(f"Cannot locate specified Dockerfile: {name}")
        return data.decode("utf-8", "surrogateescape")

    def dockerignore(self) -> list[str]:
        """The context's .dockerignore patterns ([] when there is none)."""
        data = self._read_in_root(".dockerignore", MAX_DOCKERFILE)
        if data is None:
            return []
        try:
            return read_patterns(data.decode("utf-8", "surrogateescape"))
        except PatternError as e:
            raise ContextError(f"error checking context: {e}") from None

    def apply_dockerignore(self, patterns: list[str] | None = None) -> int:
        """Remove what .dockerignore excludes; returns the number of entries removed.

        The docker CLI filters client-side and dockerd then drops only the Dockerfile and
        .dockerignore if they are excluded; doing the whole filter here as well gives a raw tar
        (curl, SDK fileobj=) the same result as the CLI. Call after `dockerfile()`: the Dockerfile
        and .dockerignore go too when a pattern excludes them, as with Docker.
        """
        if patterns is None:
            patterns = self.dockerignore()
        if not patterns:
            return 0
        try:
            matcher = Matcher(patterns)
        except PatternError as e:
            raise ContextError(f"error checking context: {e}") from None
        root_fd = self._open_root()
        budget = [MAX_WALK]
        try:
            return _prune(root_fd, "", matcher, budget)
        finally:
            os.close(root_fd)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> BuildContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _prune(dir_fd: int, prefix: str, matcher: Matcher, budget: list[int]) -> int:
    removed = 0
    with os.scandir(dir_fd) as it:
        entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    for name, is_dir in sorted(entries):
        budget[0] -= 1
        if budget[0] < 0:
            raise ContextError(f"build context has more than {MAX_WALK} entries")
        rel = prefix + name
        if matcher.excluded(rel, is_dir):
            if not is_dir or not matcher.may_contain_included(rel):
                safepath.remove_at(dir_fd, name)
                removed += 1
                continue
        if is_dir:
            try:
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            except OSError:
                continue
            try:
                removed += _prune(child, rel + "/", matcher, budget)
            finally:
                os.close(child)
    return removed


def _copy_bounded(reader: IO[bytes], out: IO[bytes], limit: int, fmt: str) -> None:
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, lzma.LZMAError, zlib.error, *gz.ERRORS)
    total = 0
    read: Callable[[int], bytes] = reader.read
    try:
        while True:
            chunk = read(_BUF)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise ContextError(f"build context is larger than {limit} bytes uncompressed")
            out.write(chunk)
    except ContextError:
        raise
    except errors as e:
        raise ContextError(f"{fmt}: {_short(e)}") from None
    except Exception as e:  # zstandard.ZstdError and friends
        raise ContextError(f"{fmt}: {_short(e)}") from None


def _short(e: BaseException) -> str:
    if isinstance(e, EOFError):
        return "unexpected EOF"
    return str(e) or type(e).__name__
