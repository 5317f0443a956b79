"""Read the k8s-file logs the container monitor writes (rotated files too) as Docker's log stream.

A k8s-file line is ``<RFC3339Nano> <stdout|stderr> <P|F> <text>``: ``F`` ends a line,
``P`` is a partial line continued by the next record.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, BinaryIO, TypeVar

T = TypeVar("T")

STDOUT = 1
STDERR = 2


class Record:
    """One record; its timestamp is decoded only when asked for (most reads never need it)."""

    __slots__ = ("stream", "data", "raw_ts", "_parsed")

    def __init__(self, stream: int, raw_ts: bytes, data: bytes) -> None:
        self.stream = stream
        self.data = data
        self.raw_ts = raw_ts
        self._parsed: tuple[str, float] | None = None

    def _time(self) -> tuple[str, float]:
        if self._parsed is None:
            try:
                self._parsed = parse_ts(self.raw_ts.decode())
            except (ValueError, UnicodeDecodeError):
                self._parsed = ("0001-01-01T00:00:00.000000000Z", 0.0)
        return self._parsed

    @property
    def ts(self) -> str:
        """RFC3339Nano in UTC with "Z", as ``docker logs -t`` prints."""
        return self._time()[0]

    @property
    def epoch(self) -> float:
        return self._time()[1]


@functools.lru_cache(maxsize=64)
def _second(main_off: str) -> tuple[str, int]:
    """("2026-11-27T23:22:23", Unix seconds) for a timestamp's whole-second part and offset; cached,
    as consecutive records share it."""
    dt = datetime.fromisoformat(main_off).astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S"), int(dt.timestamp())


def parse_ts(ts: str) -> tuple[str, float]:
    # "2026-11-27T23:22:23.195753743+00:00" (conmon writes the local offset)
    if len(ts) == 35 and ts[19] == "." and ts[20:29].isdigit():  # conmon's own shape: no scanning
        main, frac, off = ts[:19], ts[20:29], ts[29:]
    else:
        main, dot, frac_off = ts.partition(".")
        n = 0
        while n < len(frac_off) and frac_off[n].isdigit():
            n += 1
        frac, off = frac_off[:n][:9], (frac_off[n:] or "+00:00") if dot else ""
    text, whole = _second(main + off)
    return text + "." + frac.ljust(9, "0") + "Z", whole + (int(frac) / 10 ** len(frac) if frac else 0.0)


def parse_line(line: bytes) -> Record | None:
    try:
        ts, stream, tag, text = line.split(b" ", 3)
    except ValueError:
        try:
            ts, stream, tag = line.split(b" ", 2)
            text = b""
        except ValueError:
            return None
    if ts[10:11] != b"T" or not ts[:4].isdigit():  # not a record (the time itself is decoded lazily)
        return None
    return Record(STDERR if stream == b"stderr" else STDOUT, ts, text + b"\n" if tag == b"F" else text)


CHUNK = 1 << 20  # bytes read (and parsed) per trip to the reader pool
BLOCK = 64 << 10  # bytes per step when tailing backwards
# File reads and parsing run here, never on the event loop. A bounded pool: a follower borrows a
# thread for one read at a time instead of holding one while it waits for more output.
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="berth-logs")


async def offload(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_POOL, fn, *args)


def chain(path: str) -> list[str]:
    """The log's files, oldest first: the rotated ``LOG.N`` ... ``LOG.1`` (berth-monitor's
    ``max-file``), then ``LOG`` itself."""
    d, base = os.path.split(path)
    try:
        names = os.listdir(d or ".")
    except FileNotFoundError:
        return [path]
    rotated = sorted((int(n[len(base) + 1:]) for n in names
                      if n.startswith(base + ".") and n[len(base) + 1:].isdigit()), reverse=True)
    return [f"{path}.{k}" for k in rotated] + [path]


class LogReader:
    """Reads whole records from a log and its rotated files, in order; keeps working if the files
    are unlinked, and follows the log into a new file when the monitor rotates it. Offsets are
    counted across the files (a rotated file's size, then the next one's)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.files: list[BinaryIO] = []
        for p in chain(path):
            try:
                self.files.append(open(p, "rb"))  # noqa: SIM115 - closed in close()
            except FileNotFoundError:
                pass
        self.base = [0]
        for f in self.files[:-1]:
            self.base.append(self.base[-1] + os.fstat(f.fileno()).st_size)
        self.idx = 0
        self.pending = b""
        self.eof = False

    @property
    def f(self) -> BinaryIO | None:
        return self.files[self.idx] if self.files else None

    def read(self, limit: int = CHUNK) -> list[Record]:
        """The complete records in the next ``limit`` bytes; ``eof`` tells whether the log ran out."""
        f = self.f
        if f is None:
            self.eof = True
            return []
        chunk = f.read(limit)
        self.eof = len(chunk) < limit
        if self.eof and (self.idx < len(self.files) - 1 or self._rotated()):
            self.idx += 1  # that file is complete (records never span files): on to the next one
            self.files[self.idx].seek(0)
            self.eof = False
        data = self.pending + chunk
        end = data.rfind(b"\n")
        if end < 0:
            self.pending = data
            return []
        self.pending = data[end + 1:]
        return [r for r in (parse_line(line) for line in data[:end].split(b"\n")) if r is not None]

    def _rotated(self) -> bool:
        """Whether the log's path now names a newer file than the one read last; if so it is opened."""
        last = self.files[-1]
        try:
            new = open(self.path, "rb")  # noqa: SIM115 - kept in self.files, closed in close()
        except FileNotFoundError:
            return False
        if os.fstat(new.fileno()).st_ino == os.fstat(last.fileno()).st_ino:
            new.close()
            return False
        self.base.append(self.base[-1] + os.fstat(last.fileno()).st_size)
        self.files.append(new)
        return True

    def offset(self) -> int:
        """How far the log has been read (complete records, plus ``pending``)."""
        f = self.f
        return self.base[self.idx] + f.tell() if f is not None else 0

    def seek_tail(self, n: int) -> int:
        """Position the reader at the first record of the last ``n`` lines (all when negative), reading
        the files backwards from the end (a partial record belongs to the line it starts); returns the
        offset where the records present now end."""
        if not self.files:
            return 0
        last = len(self.files) - 1
        stop = self.base[last] + _after_last_newline(self.files[last])
        idx, start = 0, 0
        if n == 0:
            idx, start = last, stop - self.base[last]
        elif n > 0:
            finals, found = 0, False
            for i in range(last, -1, -1):
                f = self.files[i]
                end = _after_last_newline(f)
                after = end
                for line_start, line in _lines_backwards(f, end):
                    if _is_final(line):
                        finals += 1
                        if finals > n:
                            found = True
                            break
                    after = line_start
                idx, start = i, after
                if found:
                    break
        for j, f in enumerate(self.files):
            f.seek(start if j == idx else 0)
        self.idx = idx
        self.pending = b""
        return stop

    def close(self) -> None:
        for f in self.files:
            f.close()
        self.files = []


def _after_last_newline(f: BinaryIO) -> int:
    """The offset just past the file's last newline (a record still being written is left out)."""
    pos = f.seek(0, os.SEEK_END)
    while pos > 0:
        size = min(BLOCK, pos)
        pos -= size
        f.seek(pos)
        nl = f.read(size).rfind(b"\n")
        if nl >= 0:
            return pos + nl + 1
    return 0


def _lines_backwards(f: BinaryIO, stop: int) -> Iterator[tuple[int, bytes]]:
    """(offset, record without its newline) for the records before ``stop``, last first."""
    pos, carry = stop, b""
    while pos > 0:
        size = min(BLOCK, pos)
        pos -= size
        f.seek(pos)
        data = f.read(size) + carry
        end = len(data)  # data[end - 1] is a record's newline
        while True:
            nl = data.rfind(b"\n", 0, end - 1)
            if nl < 0:
                break
            yield pos + nl + 1, data[nl + 1:end - 1]
            end = nl + 1
        carry = data[:end]
    if carry:
        yield 0, carry[:-1]


def _is_final(line: bytes) -> bool:
    parts = line.split(b" ", 3)
    return len(parts) >= 3 and parts[2] == b"F"


async def existing(reader: LogReader, tail: int) -> AsyncIterator[list[Record]]:
    """The records already in the file (the last ``tail`` lines, or all when negative), in batches read
    off the event loop; what is written meanwhile is left to ``follow``."""
    stop = await offload(reader.seek_tail, tail)
    while (left := stop - reader.offset()) > 0:
        batch = await offload(reader.read, min(CHUNK, left))
        if batch:
            yield batch
        if reader.eof:
            return


async def follow(reader: LogReader, is_running: Callable[[], bool],
                 interval: float = 0.05) -> AsyncIterator[list[Record]]:
    """Yield batches of new records until the container stops and the file is drained."""
    while True:
        running = is_running()
        while True:
            batch = await offload(reader.read)
            if batch:
                yield batch
            if reader.eof:
                break
        if not running:
            return
        await asyncio.sleep(interval)


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0
