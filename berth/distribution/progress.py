"""What pull and push share: Docker's JSON progress messages and how many layers travel at once."""

from __future__ import annotations

from typing import Any

Progress = dict[str, Any]
PARALLEL_LAYERS = 3


def short_id(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def progress_bar(current: int, total: int) -> str:
    if total <= 0:
        return ""
    width = 50
    filled = min(width, current * width // total)
    return "[" + "=" * max(0, filled - 1) + (">" if filled else "") + " " * (width - filled) + \
        f"]  {current / 1e6:.4g}MB/{total / 1e6:.4g}MB"
