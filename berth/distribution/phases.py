"""Where a pull's time goes: per-layer phase intervals, logged as one line per pull.

``berthd`` logs ``pull timing <image> total 5.37s | <layer> download 0.00-1.20 verify 1.20-1.25 ...``
at info level; ``bench/layers_bench.py`` collects those lines from the daemon's log. Phases of
different layers (and, on the overlapped path, of one layer) overlap, so each is shown as the
interval it took, in seconds since the pull started, rather than as a sum.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

log = logging.getLogger("berth.distribution")


class Phases:
    """Thread-safe: extraction and decompression threads record their own phases."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self.spans: dict[str, list[tuple[str, float, float]]] = {}

    def add(self, layer: str, phase: str, start: float, end: float) -> None:
        with self._lock:
            self.spans.setdefault(layer, []).append((phase, start - self.t0, end - self.t0))

    @contextlib.contextmanager
    def span(self, layer: str, phase: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.add(layer, phase, start, time.monotonic())

    def line(self) -> str:
        parts = [f"pull timing {self.what} total {time.monotonic() - self.t0:.2f}s"]
        with self._lock:
            for layer, spans in self.spans.items():
                parts.append(layer + " " + " ".join(f"{p} {a:.2f}-{b:.2f}" for p, a, b in spans))
        return " | ".join(parts)

    def log(self) -> None:
        log.info("%s", self.line())
