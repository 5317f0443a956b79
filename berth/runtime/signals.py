"""Signal names as the Docker API takes them (``SIGTERM``, ``TERM``, ``15``)."""

from __future__ import annotations

import signal

SIGNALS = {name[3:]: int(getattr(signal, name)) for name in dir(signal)
           if name.startswith("SIG") and not name.startswith("SIG_") and isinstance(getattr(signal, name), int)}


def parse_signal(s: str | int | None, default: int = signal.SIGKILL) -> int:
    if s is None or s == "":
        return default
    if isinstance(s, int):
        return s
    t = s.upper().removeprefix("SIG")
    if t.isdigit():
        return int(t)
    if t in SIGNALS:
        return SIGNALS[t]
    raise ValueError(f"Invalid signal: {s}")
