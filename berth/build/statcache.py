"""Content hashes of source files, remembered by stat so an unchanged file is not read again."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time

from berth.build.copyplan import O_FILE, CopyError
from berth.fsutil import atomic_write

_BUF = 1 << 20



class StatCache:
    """sha256 of file contents keyed by (path, size, mtime_ns, inode, mode), kept in a JSON file.

    A no-change rebuild then costs a stat per file, not a read. Files modified within two
    seconds of being hashed are not remembered (git's "racy" rule): a same-size rewrite in the
    same clock tick could otherwise keep its old mtime and a stale hash. `use_inode=False` drops
    the inode from the key, for trees re-created with preserved mtimes (an unpacked context);
    only safe when the producer's mtimes are real.
    """

    RACY_NS = 2_000_000_000
    MAX_ENTRIES = 2_000_000

    def __init__(self, path: str | None = None, *, use_inode: bool = True) -> None:
        self.path = path
        self.use_inode = use_inode
        self.entries: dict[str, str] = {}
        self.hits = 0
        self.misses = 0
        self._dirty = False
        if path is not None:
            try:
                with open(path, "rb") as f:
                    data = json.loads(f.read(512 * 1024 * 1024))
                if isinstance(data, dict) and data.get("version") == 1 and isinstance(data.get("entries"), dict):
                    self.entries = {str(k): str(v) for k, v in data["entries"].items()}
            except (OSError, ValueError):
                self.entries = {}

    def key(self, namespace: str, rel: str, st: os.stat_result) -> str:
        ino = f"{st.st_dev}:{st.st_ino}" if self.use_inode else ""
        return f"{namespace}\0{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{ino}\0{st.st_mode}"

    def digest(self, namespace: str, rel: str, dir_fd: int, name: str, st: os.stat_result) -> str:
        k = self.key(namespace, rel, st)
        found = self.entries.get(k)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        value = hash_file_at(dir_fd, name, st)
        if st.st_mtime_ns < time.time_ns() - self.RACY_NS:
            if len(self.entries) >= self.MAX_ENTRIES:
                self.entries.pop(next(iter(self.entries)))
            self.entries[k] = value
            self._dirty = True
        return value

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        body = json.dumps({"version": 1, "entries": self.entries}, separators=(",", ":")).encode()
        atomic_write(self.path, body, 0o600)
        self._dirty = False


def hash_file_at(dir_fd: int, name: str, st: os.stat_result) -> str:
    """sha256 hex of regular file `name` in `dir_fd`; CopyError if it is no longer that file."""
    try:
        fd = os.open(name, O_FILE, dir_fd=dir_fd)
    except OSError as e:
        raise CopyError(f"failed to read {name}: {e.strerror}") from None
    try:
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            raise CopyError(f"file changed while the build read it: {name}")
        h = hashlib.sha256()
        while True:
            chunk = os.read(fd, _BUF)
            if not chunk:
                break
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)
