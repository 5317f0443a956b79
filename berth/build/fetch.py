"""ADD <url>: the remote file downloaded into a directory of its own, which COPY's planner then
copies from as from any source root. Mode 0600 and the server's Last-Modified as mtime, as
Docker's classic builder does; a download larger than the context limit is refused."""

from __future__ import annotations

import asyncio
import os
import posixpath
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import aiohttp

from berth.errors import InvalidParameter

MAX_DOWNLOAD = 16 << 30


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def file_name(url: str) -> str:
    name = posixpath.basename(urlsplit(url).path)
    if name in ("", ".", "..", "/"):
        raise InvalidParameter(f"cannot determine filename from url: {url}")
    return name


async def fetch(urls: list[str], into: str, limit: int = MAX_DOWNLOAD) -> list[str]:
    """Download each URL to ``into/<n>/<file name>``; returns those relative paths."""
    out: list[str] = []
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for n, url in enumerate(urls):
            name = file_name(url)
            os.mkdir(os.path.join(into, str(n)), 0o700)
            rel = f"{n}/{name}"
            path = os.path.join(into, rel)
            try:
                async with session.get(url) as resp:
                    if resp.status >= 400:
                        raise InvalidParameter(f"failed to GET {url} with status {resp.status}: {resp.reason}")
                    size = 0
                    with open(path, "xb") as f:
                        async for chunk in resp.content.iter_chunked(1 << 20):
                            size += len(chunk)
                            if size > limit:
                                raise InvalidParameter(f"ADD {url}: the download is larger than {limit} bytes")
                            await asyncio.to_thread(f.write, chunk)
                    mtime = 0.0
                    if last := resp.headers.get("Last-Modified"):
                        try:
                            mtime = parsedate_to_datetime(last).timestamp()
                        except (TypeError, ValueError):
                            mtime = 0.0
            except aiohttp.ClientError as e:
                raise InvalidParameter(f"ADD {url}: {e}") from None
            os.utime(path, (mtime, mtime))
            out.append(rel)
    return out
