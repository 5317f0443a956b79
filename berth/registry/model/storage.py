"""Storage for the registry: a small key/value-over-paths interface and its filesystem implementation.

Keys are ``/``-separated relative paths (``blobs/sha256/<hex>``, ``repositories/<name>/_layers/...``).
Every call here is synchronous and may block on disk; the HTTP layer runs them in worker threads
(``asyncio.to_thread``) so the event loop never waits on I/O.

The layout the other modules build on this interface::

    blobs/<algo>/<hex>                                   blob bytes, stored once per digest
    repositories/<name>/_layers/<algo>/<hex>             link: the blob is part of <name>
    repositories/<name>/_manifests/revisions/<algo>/<hex>  link: the manifest is in <name> (JSON: digest, mediaType)
    repositories/<name>/_manifests/tags/<tag>/current    the digest the tag points at
    repositories/<name>/_referrers/<algo>/<hex>/<algo>-<hex>  referrers index: descriptor of a manifest with subject
    _uploads/<uuid>/data, _uploads/<uuid>/state          an upload session: bytes so far, and its repository
    gc.lock                                              shared by writers, exclusive during a GC sweep
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from berth.fsutil import atomic_write, fsync_dir

TMP_PREFIX = ".tmp-"


class StatResult(NamedTuple):
    size: int
    mtime_ns: int
    is_dir: bool


class BlobWriter(ABC):
    """An append-only writer for large content (upload data files)."""

    size: int

    @abstractmethod
    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    @abstractmethod
    def truncate(self, size: int) -> None: ...

    @abstractmethod
    def sync(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Storage(ABC):
    """What the registry needs from a backend. Writes through :meth:`put` and :meth:`move` are atomic."""

    @abstractmethod
    def get(self, path: str) -> bytes:
        """The whole content; FileNotFoundError when absent."""

    @abstractmethod
    def put(self, path: str, data: bytes) -> None:
        """Replace ``path`` atomically and durably."""

    @abstractmethod
    def stat(self, path: str) -> StatResult | None:
        """Size and modification time, or None when absent."""

    @abstractmethod
    def list(self, path: str) -> list[str]:
        """Sorted child names of a directory ([] when absent), without in-flight temp files."""

    @abstractmethod
    def move(self, src: str, dst: str) -> None:
        """Rename atomically, replacing ``dst``."""

    @abstractmethod
    def delete(self, path: str) -> bool:
        """Remove a file or a whole tree; False when it was already gone."""

    @abstractmethod
    def touch(self, path: str) -> None:
        """Set the modification time to now (GC treats recently touched content as live)."""

    @abstractmethod
    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        """A binary file object positioned at ``offset``."""

    @abstractmethod
    def writer(self, path: str) -> BlobWriter:
        """An appending writer, creating the file when needed."""

    @abstractmethod
    def shared_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held by writers while they make content visible (link, tag, commit)."""

    @abstractmethod
    def exclusive_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held by the GC sweep; excludes every shared holder."""

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None


def _check_key(path: str) -> str:
    # Keys come from validated names/digests, but refuse anything that could leave the root regardless.
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"bad storage key {path!r}")
    return path


class _FileWriter(BlobWriter):
    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        self.size = os.fstat(self._fd).st_size
        os.lseek(self._fd, self.size, os.SEEK_SET)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
            self.size += n

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        os.lseek(self._fd, size, os.SEEK_SET)
        self.size = size

    def sync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class FilesystemStorage(Storage):
    """Keys map to files under ``root``; atomic writes are temp file + fsync + rename + directory fsync."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self.lock_path = os.path.join(self.root, "gc.lock")

    def path(self, key: str) -> str:
        return os.path.join(self.root, _check_key(key))

    def get(self, path: str) -> bytes:
        with open(self.path(path), "rb") as f:
            return f.read()

    def put(self, path: str, data: bytes) -> None:
        full = self.path(path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        atomic_write(full, data, tmp_prefix=TMP_PREFIX)

    def stat(self, path: str) -> StatResult | None:
        try:
            st = os.stat(self.path(path))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return StatResult(st.st_size, st.st_mtime_ns, os.path.isdir(self.path(path)))

    def list(self, path: str) -> list[str]:
        try:
            names = os.listdir(self.path(path))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(n for n in names if not n.startswith(TMP_PREFIX))

    def move(self, src: str, dst: str) -> None:
        full_dst = self.path(dst)
        d = os.path.dirname(full_dst)
        os.makedirs(d, exist_ok=True)
        os.replace(self.path(src), full_dst)
        fsync_dir(d)

    def delete(self, path: str) -> bool:
        full = self.path(path)
        try:
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)
        except FileNotFoundError:
            return False
        return True

    def touch(self, path: str) -> None:
        os.utime(self.path(path), None)

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        f = open(self.path(path), "rb")  # noqa: SIM115 - handed to the caller
        if offset:
            f.seek(offset)
        return f

    def writer(self, path: str) -> BlobWriter:
        full = self.path(path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        return _FileWriter(full)

    @contextlib.contextmanager
    def _flock(self, mode: int) -> Iterator[None]:
        # A fresh descriptor per holder: flock locks belong to the open file description, so shared
        # holders in this process and a GC in this (or another) process all see each other.
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)

    def shared_lock(self) -> contextlib.AbstractContextManager[None]:
        return self._flock(fcntl.LOCK_SH)

    def exclusive_lock(self) -> contextlib.AbstractContextManager[None]:
        return self._flock(fcntl.LOCK_EX)
