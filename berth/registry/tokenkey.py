"""The token signing key, kept under the registry root so tokens survive a restart."""

from __future__ import annotations

import os
import secrets

from berth.fsutil import atomic_write

KEY_PATH = ("_auth", "token.key")


def load_or_create_key(root: str) -> bytes:
    """``ROOT/_auth/token.key`` (hex, mode 0600), created with 32 random bytes the first time."""
    path = os.path.join(root, *KEY_PATH)
    try:
        with open(path, "rb") as f:
            key = f.read().strip()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    key = secrets.token_hex(32).encode()
    atomic_write(path, key, mode=0o600, tmp_prefix=".tmp-")
    return key
