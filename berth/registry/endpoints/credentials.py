"""Credentials: an htpasswd file of bcrypt hashes, Basic ``Authorization`` parsing, failed-login throttling."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import time
from collections import deque

import bcrypt
from aiohttp import web

from berth.registry.model.errors import RegistryError

log = logging.getLogger("berth.registry.auth")

# A valid bcrypt hash to check against for unknown users, so timing does not reveal who exists.
_DUMMY_HASH = bcrypt.hashpw(b"berth-dummy", bcrypt.gensalt(rounds=10))


class Htpasswd:
    """``user:$2y$...`` lines, reloaded when the file changes; verified off the event loop, then cached."""

    CACHE_SECONDS = 300.0

    def __init__(self, path: str) -> None:
        self.path = path
        self._users: dict[str, bytes] = {}
        self._mtime_ns = -1
        self._checked = 0.0
        self._ok: dict[tuple[str, bytes], float] = {}
        self._reload()

    def _reload(self) -> None:
        st = os.stat(self.path)
        if st.st_mtime_ns == self._mtime_ns:
            return
        users: dict[str, bytes] = {}
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#") or ":" not in line:
                    continue
                user, h = line.split(":", 1)
                if not h.startswith(("$2y$", "$2b$", "$2a$")):
                    log.warning("htpasswd %s: user %s has a non-bcrypt hash; ignored", self.path, user)
                    continue
                users[user] = h.encode()
        self._users, self._mtime_ns, self._ok = users, st.st_mtime_ns, {}

    def _check(self, user: str, password: str) -> bool:
        h = self._users.get(user)
        try:
            ok = bcrypt.checkpw(password.encode(), h or _DUMMY_HASH)
        except ValueError:
            ok = False
        return ok and h is not None

    async def verify(self, user: str, password: str) -> bool:
        now = time.monotonic()
        if now - self._checked > 2.0:
            self._checked = now
            await asyncio.to_thread(self._reload)
        key = (user, hashlib.sha256(password.encode()).digest())
        if self._ok.get(key, 0.0) > now:
            return True
        # bcrypt is deliberately slow (tens of ms or more): never on the event loop.
        if not await asyncio.to_thread(self._check, user, password):
            return False
        self._ok[key] = now + self.CACHE_SECONDS
        return True


class FailureLimiter:
    """Too many failed logins from one address in a window -> 429 TOOMANYREQUESTS."""

    def __init__(self, limit: int = 10, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._fails: dict[str, deque[float]] = {}

    def check(self, key: str) -> None:
        q = self._fails.get(key)
        now = time.monotonic()
        while q and q[0] < now - self.window:
            q.popleft()
        if q is not None and not q:
            del self._fails[key]
        elif q and len(q) >= self.limit:
            raise RegistryError("TOOMANYREQUESTS", "too many failed authentication attempts",
                                headers={"Retry-After": str(int(self.window))})

    def failed(self, key: str) -> None:
        self._fails.setdefault(key, deque()).append(time.monotonic())


def basic_credentials(request: web.Request) -> tuple[str, str] | None:
    value = request.headers.get("Authorization", "")
    scheme, _, rest = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(rest.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password
