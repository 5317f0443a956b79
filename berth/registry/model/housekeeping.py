"""Housekeeping over the registry root: expiring idle upload sessions and abandoned cache ingests.

An upload session is idle when neither its data nor its state file changed for ``max_age`` seconds
(every PATCH appends to the data file, so an active push keeps it fresh). Sessions a running server
holds a request on are skipped by the server's own sweep (``busy``). Pull-through ingests under
``_proxy/`` belong to one server process; any left when a server starts are from a crash.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from berth.registry.model import layout
from berth.registry.model.storage import Storage


@dataclass
class ExpiryReport:
    uploads_removed: list[str] = field(default_factory=list)
    bytes_freed: int = 0


def expire_uploads(storage: Storage, max_age: float, *, busy: Callable[[str], bool] = lambda _sid: False,
                   now: float | None = None, dry_run: bool = False) -> ExpiryReport:
    report = ExpiryReport()
    cutoff_ns = int(((now if now is not None else time.time()) - max_age) * 1e9)
    for sid in storage.list(layout.UPLOADS):
        if busy(sid):
            continue
        stats = [storage.stat(layout.upload_data(sid)), storage.stat(layout.upload_state(sid))]
        newest = max((st.mtime_ns for st in stats if st is not None), default=None)
        if newest is None:
            st = storage.stat(layout.upload_dir(sid))  # an empty or half-created session directory
            newest = st.mtime_ns if st is not None else None
        if newest is None or newest >= cutoff_ns:
            continue
        report.uploads_removed.append(sid)
        report.bytes_freed += stats[0].size if stats[0] is not None else 0
        if not dry_run:
            storage.delete(layout.upload_dir(sid))
    return report


def clear_ingests(storage: Storage) -> int:
    """Remove every pull-through ingest left by an earlier server process."""
    names = storage.list(layout.PROXY)
    for n in names:
        storage.delete(f"{layout.PROXY}/{n}")
    return len(names)
