"""The pieces of an overlapped layer pull: download → decompress → extract, all at once.

The event loop only moves the registry's bytes into a ``ChunkPipe`` (bounded, so a slow
decompressor holds the download back instead of filling memory). A decompression thread reads
the pipe, hashes the compressed bytes (the blob's digest) and the decompressed ones (the diff
ID) and writes the tar to a ``Spool``, which the extraction thread reads as it grows. Nothing
extracted is committed until both digests matched; on any failure the caller fails the pipe and
the spool, which stops both threads, and discards what the extraction made.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import hashlib
import io
import lzma
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from berth import gz
from berth.images.archive import ArchiveError, decompressing
from berth.layers.spool import Spool, SpoolAborted

T = TypeVar("T")
PIPE_LIMIT = 4 << 20  # downloaded bytes buffered per layer, at most (plus one chunk)
_BUF = 1 << 20
_OUT = 1 << 20  # decompressed bytes per step

try:
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal is a dependency (berth.gz); zlib is the same format
    import zlib as _zlib  # type: ignore[no-redef]


class ChunkPipe(io.RawIOBase):
    """Bytes from the event loop (``put``) to one reading thread (``readinto``), which hashes them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, algo: str, limit: int = PIPE_LIMIT) -> None:
        self.loop = loop
        self.limit = limit
        self.hash = hashlib.new(algo)
        self.count = 0  # bytes read (and hashed) by the reader
        self._cond = threading.Condition()
        self._chunks: collections.deque[memoryview] = collections.deque()
        self._buffered = 0
        self._eof = False
        self._error: BaseException | None = None
        self._room = asyncio.Event()
        self._waiting = False

    # -- the event loop's side -------------------------------------------------------
    async def put(self, data: bytes) -> None:
        while True:
            with self._cond:
                if self._error is not None:
                    raise SpoolAborted(str(self._error))
                if self._buffered < self.limit:
                    self._chunks.append(memoryview(data))
                    self._buffered += len(data)
                    self._cond.notify()
                    return
                self._waiting = True
                self._room.clear()
            await self._room.wait()

    def close_writer(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify()

    def fail(self, error: BaseException) -> None:
        """Stop both sides: the reader's next read and the writer's next ``put`` raise ``SpoolAborted``."""
        with self._cond:
            if self._error is None:
                self._error = error
            self._cond.notify()
        self._room.set()

    # -- the reading thread's side ------------------------------------------------------
    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        with self._cond:
            while not self._chunks and not self._eof and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise SpoolAborted(str(self._error))
            n = 0
            view = memoryview(b).cast("B")
            while self._chunks and n < len(view):  # as much as is there: fewer wake-ups per MB
                chunk = self._chunks[0]
                k = min(len(view) - n, len(chunk))
                view[n:n + k] = chunk[:k]
                if k == len(chunk):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = chunk[k:]
                n += k
            self._buffered -= n
            if self._waiting and self._buffered < self.limit:
                self._waiting = False
                self.loop.call_soon_threadsafe(self._room.set)
        self.hash.update(view[:n])
        self.count += n
        return n

    def digest(self) -> str:
        return f"{self.hash.name}:{self.hash.hexdigest()}"


def inflate(pipe: ChunkPipe, tar: Spool) -> str:
    """Decompress the pipe into the spool (blocking; its own thread); return the tar's diff ID.
    The spool is finished on success and failed otherwise, so its readers always wake. Output
    is written as soon as it is decompressed (no waiting for a full buffer: the extractor is
    reading behind it)."""
    h = hashlib.sha256()

    def emit(data: bytes) -> None:
        h.update(data)
        tar.write(data)
    try:
        try:
            head = b""
            while len(head) < 6 and (more := pipe.read(_BUF)):
                head += more
            if head.startswith(b"\x1f\x8b"):
                _gunzip(pipe, head, emit)
            elif head.startswith((b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")):
                d = decompressing(_Prefixed(head, pipe))  # type: ignore[arg-type]
                while chunk := d.read(_BUF):
                    emit(chunk)
            else:  # an uncompressed layer
                while head:
                    emit(head)
                    head = pipe.read(_BUF)
            while pipe.read(_BUF):  # whatever follows the compressed stream is still part of the blob
                pass
        except (OSError, EOFError, lzma.LZMAError, *gz.ERRORS, _zstd_error()) as e:  # type: ignore[misc]
            # read the rest of the blob all the same: a corrupted download is reported as a digest
            # mismatch (and the loop's writes must not wait for a reader that left)
            while pipe.read(_BUF):
                pass
            raise ArchiveError(f"invalid layer data: {e}") from e
    except BaseException as e:
        tar.fail(e)
        raise
    tar.finish()
    return "sha256:" + h.hexdigest()


def _gunzip(pipe: ChunkPipe, first: bytes, emit: Callable[[bytes], None]) -> None:
    """gzip members (any number, zero padding between them, as gzip readers accept) → ``emit``,
    at most ``_OUT`` bytes at a time (a small blob may expand to a great deal)."""
    d = _decompressor()
    started = False
    buf = first
    while True:
        if not buf:
            buf = pipe.read(_BUF)
            if not buf:
                break
        if not started:
            buf = buf.lstrip(b"\0")
            if not buf:
                continue
            started = True
        out = d.decompress(buf, _OUT)
        if out:
            emit(out)
        if d.eof:
            buf, d, started = d.unused_data, _decompressor(), False
        else:
            buf = d.unconsumed_tail
    if started:
        raise EOFError("compressed data ended before the end of the gzip stream")


def _decompressor() -> Any:
    return _zlib.decompressobj(31)


class _Prefixed(io.RawIOBase):
    """``head`` (already read), then the rest of the pipe."""

    def __init__(self, head: bytes, rest: ChunkPipe) -> None:
        self.head = head
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        return self.rest.readinto(b)


def _zstd_error() -> type[Exception]:
    import zstandard

    return zstandard.ZstdError


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas for the process (unless ``MALLOC_ARENA_MAX`` is set).

    Every pull thread that allocates gets an arena of its own (up to 8 per core), and each keeps
    the MB-sized buffers freed in it: berthd's peak RSS during the five-layer bench pull was
    173-191 MB with the default, 113 MB with two arenas (the threads mostly wait on the GIL or
    in the kernel, so they gain nothing from separate arenas). A no-op on other C libraries."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_ARENA_MAX, arenas)
    except (OSError, AttributeError):
        pass


_M_ARENA_MAX = -8  # glibc's malloc.h


def start_thread(name: str, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """``fn(*args)`` on a thread of its own (not the shared pool: pipeline stages block on each
    other, and a bounded pool could hold a reader while its writer waits for a worker)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not fut.done():
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def run() -> None:
        try:
            result: Any = fn(*args)
            ok = True
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting task
            result, ok = e, False
        with contextlib.suppress(RuntimeError):  # the loop closed (daemon exit): nobody is waiting
            loop.call_soon_threadsafe(settle, ok, result)

    threading.Thread(target=run, name=name, daemon=True).start()
    return fut


async def settled(fut: asyncio.Future[Any]) -> None:
    """Wait until a thread's future is done, even through cancellation (its thread cannot be
    cancelled; cleanup must see it finished). A cancellation is re-raised afterwards."""
    cancelled = False
    while not fut.done():
        try:
            await asyncio.wait({fut})
        except asyncio.CancelledError:
            cancelled = True
    if not fut.cancelled():
        fut.exception()  # retrieved: the caller decides what to report
    if cancelled:
        raise asyncio.CancelledError
