"""Repositories: which exist, walked from the ``repositories/`` tree."""

from __future__ import annotations

from berth.registry.model import layout
from berth.registry.model.storage import Storage


def exists(storage: Storage, name: str) -> bool:
    st = storage.stat(layout.repo(name))
    return st is not None and st.is_dir


def repositories(storage: Storage) -> list[str]:
    """Directories under ``repositories/`` holding ``_manifests`` or ``_layers``; names nest with ``/``."""
    found: list[str] = []

    def walk(key: str, prefix: str) -> None:
        for child in storage.list(key):
            if child.startswith("_"):
                continue  # _layers/_manifests/_referrers: repository data, not a nested name
            sub = f"{key}/{child}"
            kids = storage.list(sub)
            if not kids:
                continue
            if "_manifests" in kids or "_layers" in kids:
                found.append(prefix + child)
            walk(sub, f"{prefix}{child}/")

    walk(layout.REPOSITORIES, "")
    return sorted(found)

