"""The upstream of a pull-through cache: one HTTP session and a token per repository.

Authentication (Basic, or Bearer tokens from the upstream's realm) is Berth's registry client's
(:mod:`berth.distribution.client`); this module adds the connection policy and classifies failures.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlsplit

import aiohttp

from berth.distribution.client import MANIFEST_ACCEPT, Credentials, Registry

UNREACHABLE: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
READ_BUFSIZE = 4 << 20
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``168h``, ``30m``, ``45s``, ``1.5h``, ``2d`` or plain seconds; ValueError otherwise."""
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"bad duration {text!r}: expected a number with an optional unit ms, s, m, h or d")
    return float(m.group(1)) * _UNITS[m.group(2)]


def check_url(url: str) -> str:
    """The upstream base URL, refused unless it is http(s)://host[:port] with nothing odd after it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--proxy-remote-url {url!r}: must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ValueError(f"--proxy-remote-url {url!r}: must not have a query or fragment")
    return url.rstrip("/")


class Upstream:
    ACCEPT = MANIFEST_ACCEPT

    def __init__(self, url: str, username: str = "", password: str = "", *, connect_timeout: float = 5.0,
                 read_timeout: float = 60.0) -> None:
        self.base = check_url(url)
        self.creds = Credentials(username, password)
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._repos: dict[str, Registry] = {}

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # A deep read buffer (aiohttp's default is 64 KiB) keeps the socket draining while a chunk
            # is written and hashed in a thread, and hands that thread fewer, larger chunks.
            self._session = aiohttp.ClientSession(timeout=self._timeout, auto_decompress=False,
                                                  read_bufsize=READ_BUFSIZE)
            self._repos.clear()
        return self._session

    def repo(self, name: str) -> Registry:
        """A client for ``name`` on the upstream; it keeps its token between requests."""
        session = self.session()
        reg = self._repos.get(name)
        if reg is None:
            reg = self._repos[name] = Registry(session, self.base, name, self.creds, "pull")
        return reg

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
