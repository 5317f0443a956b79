"""Content store: immutable blobs named by their sha256, written atomically.

A blob's digest is verified by whoever names it (the image store checks each config blob
against its image ID); the content store's own check counts its blobs and lists the
temporaries an interrupted write left."""

from __future__ import annotations

import hashlib
import os

from berth.fsutil import atomic_write
from berth.storecheck import TEMP, Findings, Leftover, is_temp, ls


class DigestMismatch(ValueError):
    pass


class ContentStore:
    def __init__(self, root: str, create: bool = True) -> None:
        """``create=False``: only look (``berth check``)."""
        self.root = os.path.join(root, "blobs", "sha256")
        if create:
            os.makedirs(self.root, exist_ok=True)

    def path(self, digest: str) -> str:
        algo, _, hexd = digest.partition(":")
        if algo != "sha256" or len(hexd) != 64 or not all(c in "0123456789abcdef" for c in hexd):
            raise ValueError(f"invalid digest {digest!r}")
        return os.path.join(self.root, hexd)

    def put(self, data: bytes, expect: str | None = None) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if expect is not None and expect != digest:
            raise DigestMismatch(f"digest mismatch: expected {expect}, got {digest}")
        p = self.path(digest)
        if not os.path.exists(p):
            atomic_write(p, data)
        return digest

    def get(self, digest: str) -> bytes:
        with open(self.path(digest), "rb") as f:
            return f.read()

    def exists(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            pass

    def walk(self) -> list[str]:
        """Digests of every blob (temporaries left out)."""
        return ["sha256:" + name for name in ls(self.root) if not is_temp(name)]

    def verify(self, digest: str) -> bool:
        """Whether the blob still hashes to its name (FileNotFoundError when it is gone)."""
        h = hashlib.sha256()
        with open(self.path(digest), "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return "sha256:" + h.hexdigest() == digest

    def check(self) -> Findings:
        return Findings(checked=len(self.walk()))

    def leftovers(self) -> list[Leftover]:
        return [Leftover(os.path.join(self.root, name), TEMP, "interrupted atomic write")
                for name in ls(self.root) if is_temp(name)]
