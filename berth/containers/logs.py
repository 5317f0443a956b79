"""Read the k8s-file logs conmon writes and turn them into Docker's log stream.

A k8s-file line is ``<RFC3339Nano> <stdout|stderr> <P|F> <text>``: ``F`` ends a line,
``P`` is a partial line continued by the next record.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

STDOUT = 1
STDERR = 2


@dataclass
class Record:
    stream: int
    ts: str  # RFC3339Nano in UTC with "Z", as docker logs -t prints
    epoch: float
    data: bytes


def parse_ts(ts: str) -> tuple[str, float]:
    # "2026-11-27T23:22:23.195753743+00:00" (conmon writes the local offset)
    main, _, frac_off = ts.partition(".")
    frac = frac_off[:9]
    off = frac_off[len(frac):] or "+00:00"
    dt = datetime.fromisoformat(main + off).astimezone(UTC)
    epoch = dt.timestamp() + float("0." + (frac or "0"))
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + "." + frac.ljust(9, "0") + "Z", epoch


def parse_line(line: bytes) -> Record | None:
    try:
        ts, stream, tag, text = line.split(b" ", 3)
    except ValueError:
        try:
            ts, stream, tag = line.split(b" ", 2)
            text = b""
        except ValueError:
            return None
    try:
        tsz, epoch = parse_ts(ts.decode())
    except ValueError:
        return None
    data = text + (b"\n" if tag == b"F" else b"")
    return Record(STDERR if stream == b"stderr" else STDOUT, tsz, epoch, data)


class LogReader:
    """Reads whole records from an open log file; keeps working if the file is unlinked."""

    def __init__(self, path: str) -> None:
        try:
            self.f: BinaryIO | None = open(path, "rb")  # noqa: SIM115 - closed in close()
        except FileNotFoundError:
            self.f = None
        self.pending = b""

    def read(self) -> list[Record]:
        if self.f is None:
            return []
        data = self.pending + self.f.read()
        end = data.rfind(b"\n")
        if end < 0:
            self.pending = data
            return []
        self.pending = data[end + 1:]
        return [r for r in (parse_line(line) for line in data[:end].split(b"\n")) if r is not None]

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None


def tail_records(records: list[Record], n: int) -> list[Record]:
    """The records of the last ``n`` lines (a partial record belongs to the line it starts)."""
    if n < 0:
        return records
    if n == 0:
        return []
    count = 0
    for i in range(len(records) - 1, -1, -1):
        if records[i].data.endswith(b"\n"):
            count += 1
            if count > n:
                return records[i + 1:]
    return records


async def follow(reader: LogReader, is_running: Callable[[], bool],
                 interval: float = 0.05) -> AsyncIterator[Record]:
    """Yield new records until the container stops and the file is drained."""
    while True:
        running = is_running()
        for r in reader.read():
            yield r
        if not running:
            for r in reader.read():
                yield r
            return
        await asyncio.sleep(interval)


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0
