"""Garbage collection: delete blobs no manifest references and, on request, manifests no tag reaches.

What stays
    Every tag's manifest is a root; without ``delete_untagged`` every manifest revision is one too.
    From each root, within its repository: the manifest's own blob, its config and layers, its index
    children (followed recursively), its ``subject`` when that manifest is in the repository, and the
    manifests that name it as their ``subject`` (signatures, SBOMs). Everything reached is kept. Any other
    blob is deleted, as are repository links to deleted (or missing) blobs and stale referrers entries.

Why it is safe while the registry takes pushes
    1. A start marker is written first; its mtime (from the same filesystem clock as every other file)
       minus ``grace_seconds`` is the *cutoff*. Anything whose mtime is at or after the cutoff is treated
       as live, whatever the mark phase concluded.
    2. The mark phase walks repositories and reads manifests with no lock held, so pushes proceed.
       Blob deletion candidates are only blobs *listed* during marking and not marked.
    3. Every write that makes content visible -- committing an upload (rename, or touching the existing
       blob when deduplicated), a cross-repository mount (touches the blob), a manifest PUT (checks its
       blobs, stores itself, links the revision, tags) -- runs inside the root's *shared* lock
       (``gc.lock``) and leaves a fresh mtime on the blob/revision/tag it makes visible.
    4. The sweep takes the lock *exclusively*, so it sees each such write entirely or not at all. Under
       it, GC re-reads tags and revisions and extends the mark from the current roots plus every revision
       newer than the cutoff (an index or referrer pushed during marking keeps what it points at; only
       manifests not yet visited are read), then deletes an unmarked candidate only if its mtime is still
       older than the cutoff, and an untagged revision only if it is unreached and older than the cutoff.
    A push that finished before the sweep is therefore either marked (its manifest is new) or, if no
    manifest names it yet, newer than the cutoff; a push that commits after the sweep finds deleted blobs
    missing and fails cleanly (MANIFEST_BLOB_UNKNOWN, or a mount falls back to an upload) instead of
    producing a manifest with holes. Uploads in progress live under ``_uploads`` and are never touched.
    ``grace_seconds`` additionally protects blobs uploaded shortly *before* GC started whose manifest is
    still to come (a push in flight); 0 keeps the strict "newer than the GC start" rule.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from berth.registry.model import catalog, layout, manifests, referrers, tags
from berth.registry.model.digests import Digest, parse_digest
from berth.registry.model.errors import RegistryError
from berth.registry.model.storage import FilesystemStorage, Storage


@dataclass
class GCReport:
    dry_run: bool
    blobs_deleted: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    manifests_deleted: list[tuple[str, str]] = field(default_factory=list)  # (repository, digest)
    links_removed: int = 0
    referrer_entries_removed: int = 0
    blobs_marked: int = 0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _digests_under(storage: Storage, key: str) -> Iterable[Digest]:
    """``<key>/<algo>/<hex>`` entries as digests; anything malformed is skipped."""
    for algo in storage.list(key):
        for hexd in storage.list(f"{key}/{algo}"):
            try:
                yield parse_digest(f"{algo}:{hexd}")
            except RegistryError:
                continue


@dataclass
class _Repo:
    name: str
    revisions: dict[Digest, int]  # digest -> mtime_ns of the revision link
    tag_targets: list[Digest]
    referrers: dict[Digest, list[Digest]]  # subject -> manifests naming it


def _scan(storage: Storage, name: str) -> _Repo:
    revisions: dict[Digest, int] = {}
    for d in _digests_under(storage, layout.revisions_dir(name)):
        st = storage.stat(layout.revision(name, d))
        if st is not None:
            revisions[d] = st.mtime_ns
    targets = [td for t in tags.list_tags(storage, name) if (td := tags.resolve(storage, name, t)) is not None]
    refs: dict[Digest, list[Digest]] = {}
    for subject in _digests_under(storage, layout.referrers_root(name)):
        for entry in storage.list(layout.referrers_dir(name, subject)):
            rd = referrers.entry_digest(entry)
            if rd is not None:
                refs.setdefault(subject, []).append(rd)
    return _Repo(name, revisions, targets, refs)


class _Marker:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.blobs: set[Digest] = set()
        self.kept: dict[str, set[Digest]] = {}  # repository -> kept revisions
        self._visited: dict[str, set[Digest]] = {}
        self._refs: dict[Digest, tuple[list[Digest], list[Digest], Digest | None]] = {}

    def references(self, d: Digest) -> tuple[list[Digest], list[Digest], Digest | None]:
        # Manifests are immutable by digest, so what was read during marking stays true in the sweep.
        if d not in self._refs:
            try:
                self._refs[d] = manifests.references(self.storage.get(layout.blob(d)))
            except FileNotFoundError:
                return [], [], None
        return self._refs[d]

    def mark(self, repo: _Repo, roots: Iterable[Digest]) -> None:
        kept = self.kept.setdefault(repo.name, set())
        visited = self._visited.setdefault(repo.name, set())
        queue = [d for d in roots if d not in visited]
        while queue:
            d = queue.pop()
            if d in visited:
                continue
            visited.add(d)
            self.blobs.add(d)
            if d in repo.revisions:
                kept.add(d)
            blob_refs, children, subject = self.references(d)
            self.blobs.update(blob_refs)
            # Children are followed even without a revision: their blobs are still what the index names.
            queue.extend(children)
            if subject is not None and subject in repo.revisions:
                queue.append(subject)
            queue.extend(r for r in repo.referrers.get(d, ()) if r in repo.revisions)


def _roots(repo: _Repo, delete_untagged: bool, cutoff_ns: int) -> list[Digest]:
    roots = list(repo.tag_targets)
    if delete_untagged:
        roots += [d for d, mtime in repo.revisions.items() if mtime >= cutoff_ns]
    else:
        roots += list(repo.revisions)
    return [d for d in roots if d in repo.revisions]


def _start_marker(storage: Storage) -> int:
    key = f"_gc/start-{os.getpid()}-{os.urandom(4).hex()}"
    storage.put(key, b"")
    st = storage.stat(key)
    storage.delete(key)
    assert st is not None
    return st.mtime_ns


def collect(root: str | Storage, dry_run: bool = False, delete_untagged: bool = False, *,
            grace_seconds: float = 0.0, on_marked: Callable[[], None] | None = None) -> GCReport:
    """Run one collection over ``root``; safe alongside a serving registry (see the module docstring).

    ``on_marked`` runs between the unlocked mark phase and the locked sweep (used by tests to race it).
    """
    storage = root if isinstance(root, Storage) else FilesystemStorage(root)
    report = GCReport(dry_run=dry_run)
    cutoff = _start_marker(storage) - int(grace_seconds * 1e9)
    marker = _Marker(storage)

    # Mark, unlocked.
    for name in catalog.repositories(storage):
        repo = _scan(storage, name)
        marker.mark(repo, _roots(repo, delete_untagged, cutoff))
    candidates = [d for d in _digests_under(storage, layout.BLOBS) if d not in marker.blobs]
    dangling: list[tuple[str, Digest]] = []
    for name in catalog.repositories(storage):
        for d in _digests_under(storage, layout.layers_dir(name)):
            if d not in marker.blobs and storage.stat(layout.blob(d)) is None:
                dangling.append((name, d))
    if on_marked is not None:
        on_marked()

    with storage.exclusive_lock():
        # Re-mark what changed while we were unlocked: new tags, new revisions, new repositories.
        repos = [_scan(storage, name) for name in catalog.repositories(storage)]
        for repo in repos:
            marker.mark(repo, _roots(repo, delete_untagged, cutoff))
        report.blobs_marked = len(marker.blobs)

        if delete_untagged:
            for repo in repos:
                kept = marker.kept.get(repo.name, set())
                for d, mtime in sorted(repo.revisions.items()):
                    if d in kept or mtime >= cutoff:
                        continue
                    report.manifests_deleted.append((repo.name, str(d)))
                    if not dry_run:
                        storage.delete(layout.revision(repo.name, d))
                        subject = marker.references(d)[2]
                        if subject is not None and referrers.forget(storage, repo.name, subject, d):
                            report.referrer_entries_removed += 1

        deleted: set[Digest] = set()
        for d in candidates:
            if d in marker.blobs:
                continue
            st = storage.stat(layout.blob(d))
            if st is None or st.mtime_ns >= cutoff:
                continue  # gone already, or written/linked/reused since GC started
            deleted.add(d)
            report.blobs_deleted.append(str(d))
            report.bytes_freed += st.size
            if not dry_run:
                storage.delete(layout.blob(d))

        for repo in repos:
            for d in _digests_under(storage, layout.layers_dir(repo.name)):
                if d in deleted:
                    report.links_removed += 1
                    if not dry_run:
                        storage.delete(layout.layer_link(repo.name, d))
        for name, d in dangling:
            # Writers link only after the blob exists and inside the shared lock, so a link without its
            # blob seen here, under the exclusive lock, is truly dangling.
            if storage.stat(layout.blob(d)) is None and storage.stat(layout.layer_link(name, d)) is not None:
                report.links_removed += 1
                if not dry_run:
                    storage.delete(layout.layer_link(name, d))

        if not dry_run:
            for repo in repos:
                for subject, refs in repo.referrers.items():
                    for d in refs:
                        if storage.stat(layout.revision(repo.name, d)) is None and \
                                referrers.forget(storage, repo.name, subject, d):
                            report.referrer_entries_removed += 1
    return report


def format_report(report: GCReport) -> str:
    return json.dumps(report.to_dict(), indent=2)
