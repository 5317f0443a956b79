"""Content store: immutable blobs named by their sha256, written atomically."""

from __future__ import annotations

import hashlib
import os

from berth.fsutil import atomic_write


class DigestMismatch(ValueError):
    pass


class ContentStore:
    def __init__(self, root: str) -> None:
        self.root = os.path.join(root, "blobs", "sha256")
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
