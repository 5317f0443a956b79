"""The content store on its own: a real SQLite database and real files in a temporary data root."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.content import BlobNotFound, ContentStore, DigestMismatch
from berth.content.store import at
from berth.db import open_db
from berth.storecheck import ORPHAN, TEMP


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = open_db(str(tmp_path / "berth.db"))
    yield c
    c.close()


@pytest.fixture
def store(conn: sqlite3.Connection, tmp_path: Path) -> ContentStore:
    return at(conn, str(tmp_path))


def files(d: str) -> list[str]:
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def test_a_streamed_blob_commits_verified_and_reads_back(store: ContentStore) -> None:
    data = os.urandom(3 << 20)
    with store.writer(sha(data), len(data)) as w:
        for i in range(0, len(data), 65536):
            w.write(data[i:i + 65536])
        assert not list(store.walk())  # nothing visible before the commit
        digest = w.commit(["test/one"])
    assert digest == sha(data) and store.read(digest) == data
    info = store.info(digest)
    assert info.size == len(data) and info.refs == ["test/one"]
    assert list(store.walk()) == [digest] and files(store.ingest_dir) == []
    with store.open(digest, offset=10) as f:
        assert f.read(5) == data[10:15]
    assert store.verify(digest) and store.ref("test/one") == digest


@pytest.mark.parametrize("wrong", ["digest", "size"])
def test_a_wrong_digest_or_size_is_refused_and_leaves_nothing(store: ContentStore, wrong: str) -> None:
    data = b"the real bytes"
    expected, size = (sha(b"other bytes"), None) if wrong == "digest" else (sha(data), len(data) + 1)
    w = store.writer(expected, size)
    w.write(data)
    with pytest.raises(DigestMismatch, match=f"{wrong} mismatch"):
        w.commit(["test/x"])
    assert files(store.ingest_dir) == [] and list(store.walk()) == []
    assert store.refs() == {} and not store.exists(sha(data))
    with pytest.raises(DigestMismatch):
        store.put(data, ["test/x"], expected=sha(b"nope"))
    assert list(store.walk()) == [] and store.refs() == {}


def test_an_abandoned_writer_keeps_nothing(store: ContentStore) -> None:
    with pytest.raises(RuntimeError), store.writer() as w:
        w.write(b"half a blob")
        raise RuntimeError("the client went away")
    with store.writer() as w:
        w.write(b"never committed")
    assert files(store.ingest_dir) == [] and list(store.walk()) == []


def test_concurrent_writers_of_one_digest_make_one_blob(store: ContentStore) -> None:
    data = os.urandom(1 << 20)
    results: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def write() -> None:
        try:
            w = store.writer(sha(data))
            start.wait()
            for i in range(0, len(data), 4096):
                w.write(data[i:i + 4096])
            results.append(w.commit())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == [sha(data)] * 8
    assert list(store.walk()) == [sha(data)] and files(store.ingest_dir) == []
    assert store.read(sha(data)) == data


def test_references_keep_blobs_and_collection_removes_the_rest(store: ContentStore) -> None:
    a, b, c = (store.put(x) for x in (b"a", b"b", b"c"))
    store.keep("image.config/one", a)
    store.keep("image.config/two", a)
    store.keep("layer.gzip/x", b)
    assert store.refs("image.config/") == {"image.config/one": a, "image.config/two": a}
    assert store.collect() == [c] and not store.exists(c)
    assert store.release("image.config/one") == [] and store.exists(a)  # "two" still keeps it
    assert store.release("image.config/two") == [a] and not store.exists(a)
    store.delete(b)
    assert store.refs() == {} and list(store.walk()) == []
    with pytest.raises(BlobNotFound):
        store.read(b)


def test_check_finds_missing_blobs_damaged_blobs_and_crash_leftovers(store: ContentStore, tmp_path: Path) -> None:
    kept = store.put(b"kept", ["test/kept"])
    gone = store.put(b"gone", ["test/gone"])
    os.unlink(os.path.join(store.blobs, gone.split(":")[1]))
    damaged = store.put(b"damaged", ["test/damaged"])
    with open(os.path.join(store.blobs, damaged.split(":")[1]), "wb") as f:
        f.write(b"DAMAGED")
    orphan = store.put(b"nobody keeps me")
    w = store.writer()
    w.write(b"a write a crash cut short")  # never committed nor aborted: as if berthd died here
    found = store.check(verify_data=True)
    assert sorted(map(str, found.problems)) == [
        f"blob {damaged}: content does not match its digest",
        f"content test/gone: blob {gone} is missing",
    ]
    assert found.checked == 3
    # a read-only look, as ``berth check`` takes, sees the same and changes nothing
    ro = sqlite3.connect(f"file:{tmp_path / 'berth.db'}?mode=ro", uri=True)
    try:
        left = {(x.path, x.kind) for x in at(ro, str(tmp_path), create=False).leftovers()}
    finally:
        ro.close()
    assert left == {(w.path, TEMP), (os.path.join(store.blobs, orphan.split(":")[1]), ORPHAN)}
    assert store.exists(kept) and store.exists(orphan) and os.path.exists(w.path)


def test_an_older_data_root_keeps_its_blobs(conn: sqlite3.Connection, tmp_path: Path) -> None:
    """Blobs in the pre-content-store directories are read where they are, then adopted."""
    legacy = tmp_path / "image" / "blobs" / "sha256"
    legacy.mkdir(parents=True)
    data = b'{"config":{}}'
    (legacy / sha(data).split(":")[1]).write_bytes(data)
    (legacy / ".tmp-0123").write_bytes(b"partial")
    store = at(conn, str(tmp_path))
    assert store.read(sha(data)) == data  # read in place
    assert (str(legacy / ".tmp-0123"), TEMP) in {(x.path, x.kind) for x in store.leftovers()}
    assert store.adopt(sha(data), ["image.config/" + sha(data)])
    assert not (legacy / sha(data).split(":")[1]).exists() and list(store.walk()) == [sha(data)]
    assert store.info(sha(data)).refs == ["image.config/" + sha(data)]
    store.drop_legacy()
    assert not (tmp_path / "image").exists()
    assert store.check(verify_data=True).problems == []


def test_the_registry_reads_blobs_through_the_content_store(store: ContentStore) -> None:
    from berth.content.registryview import ContentBlobs
    from berth.registry.model.digests import parse_digest

    data = b"a layer pushed by berthd"
    d = parse_digest(store.put(data, ["layer.gzip/sha256:" + "a" * 64]))
    view = ContentBlobs(store, lambda name, _d: name == "library/app")
    assert view.stored_blob_size(d) == len(data)
    assert view.blob_size("library/app", d) == len(data) and view.blob_size("other", d) is None
    with view.open_blob(d, 2) as f:
        assert f.read() == data[2:]
    missing = parse_digest(sha(b"not stored"))
    assert view.stored_blob_size(missing) is None and view.blob_size("library/app", missing) is None
    with pytest.raises(FileNotFoundError):
        view.open_blob(missing)


def test_a_lease_does_not_outlive_its_run(conn: sqlite3.Connection, tmp_path: Path) -> None:
    """A pull keeps its download by a lease until it is extracted; if berthd dies in between, the blob
    is a leftover, and the lease goes when the store next opens."""
    store = at(conn, str(tmp_path))
    leased = store.put(b"a download", ["lease/pull-0123"])
    kept = store.put(b"a config", ["image.config/x"])
    assert [(x.path, x.kind) for x in store.leftovers()] == [(store.path(leased), ORPHAN)]
    again = at(conn, str(tmp_path))
    assert again.refs() == {"image.config/x": kept} and list(again.walk()) == [kept]
