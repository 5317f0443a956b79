"""Schema migrations: a data root written before schema versions existed opens, keeps every record
and advances its versions; tables newer than this berth are refused, not run on.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from tests.conftest import Daemon

# Every table as the first versioned release found it (user_version 0, no schema_versions): frozen
# here, not imported, so that a later change to a store's step 1 cannot make this test pass vacuously.
V1_DDL = """
CREATE TABLE layers (chain_id TEXT PRIMARY KEY, diff_id TEXT NOT NULL, parent TEXT REFERENCES layers(chain_id),
    cache_id TEXT NOT NULL, size INTEGER NOT NULL, tar_size INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE rw_layers (cid TEXT PRIMARY KEY, parent TEXT REFERENCES layers(chain_id), created REAL NOT NULL);
CREATE TABLE images (id TEXT PRIMARY KEY, top_layer TEXT, size INTEGER NOT NULL, parent TEXT NOT NULL DEFAULT '',
    added REAL NOT NULL);
CREATE TABLE refs (name TEXT PRIMARY KEY, image_id TEXT NOT NULL REFERENCES images(id));
CREATE TABLE repo_digests (name TEXT PRIMARY KEY, image_id TEXT NOT NULL REFERENCES images(id));
CREATE TABLE containers (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
CREATE TABLE volumes (name TEXT PRIMARY KEY, driver TEXT NOT NULL, labels TEXT NOT NULL, options TEXT NOT NULL,
    anonymous INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE compressed_layers (diff_id TEXT PRIMARY KEY, digest TEXT NOT NULL, size INTEGER NOT NULL);
CREATE TABLE blob_repos (digest TEXT NOT NULL, registry TEXT NOT NULL, repo TEXT NOT NULL,
    PRIMARY KEY (digest, registry, repo));
"""
TABLES = ["layers", "rw_layers", "images", "refs", "repo_digests", "containers", "volumes", "blob_repos"]


def berth_check(d: Daemon) -> subprocess.CompletedProcess[bytes]:
    argv = [sys.executable, "-m", "berth.cli.main", "check", "--verify-data", "--data-root", d.data_root]
    return subprocess.run(argv, capture_output=True, timeout=120)


def rows(db: str) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(db)
    try:
        return {t: sorted(tuple(r) for r in conn.execute(f"SELECT * FROM {t}")) for t in TABLES}
    finally:
        conn.close()


def rewrite_as_v1(db: str) -> dict[str, list[tuple[object, ...]]]:
    """Replace the stopped daemon's database by a first-schema one holding the same records."""
    data = rows(db)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    conn = sqlite3.connect(db)
    try:
        conn.executescript(V1_DDL)
        for t, rs in data.items():
            for r in rs:
                conn.execute(f"INSERT INTO {t} VALUES ({','.join('?' * len(r))})", r)
        conn.commit()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    finally:
        conn.close()
    os.chmod(db, 0o600)
    return data


def test_first_schema_data_root_opens_and_migrates(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.cli("volume", "create", "keep")
    d.cli("run", "--name", "old", "-v", "keep:/v", "busybox", "sh", "-c", "echo kept > /v/f; echo made > /made")
    d.cli("commit", "old", "snap:1")
    d.cli("tag", "busybox", "other:2")
    d.stop()
    db = os.path.join(d.data_root, "berth.db")
    before = rewrite_as_v1(db)
    assert before["containers"] and len(before["images"]) == 2 and len(before["layers"]) == 2
    r = berth_check(d)  # an old-schema root checks clean: no migration is needed to read it
    assert r.returncode == 0 and r.stdout.rstrip().endswith(b"ok"), r.stdout + r.stderr

    d.start()
    assert d.cli("run", "--rm", "-v", "keep:/v", "snap:1", "sh", "-c", "cat /v/f /made").stdout == b"kept\nmade\n"
    assert json.loads(d.cli("inspect", "old").stdout)[0]["State"]["ExitCode"] == 0
    assert b"other:2" in d.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    d.cli("start", "-a", "old")
    d.stop()
    after = rows(db)
    # a container's record holds its state, which the start above changed
    assert [r[:2] for r in after.pop("containers")] == [r[:2] for r in before.pop("containers")]
    assert after == before, "every record survives the migration"
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        versions = dict(conn.execute("SELECT store, version FROM schema_versions").fetchall())
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    finally:
        conn.close()
    assert versions == {"layers": 2, "images": 2, "containers": 1, "volumes": 1, "distribution": 2, "content": 1,
                        "build": 1, "networks": 1}
    assert {"layers_parent", "rw_layers_parent", "refs_image", "repo_digests_image", "images_parent"} <= indexes
    r = berth_check(d)
    assert r.returncode == 0 and b"checked 2 images" in r.stdout, r.stdout + r.stderr
    d.start()


def test_tables_newer_than_berth_are_refused(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.stop()
    db = os.path.join(d.data_root, "berth.db")
    conn = sqlite3.connect(db)
    try:
        conn.execute("UPDATE schema_versions SET version=99 WHERE store='images'")
        conn.commit()
    finally:
        conn.close()
    r = berth_check(d)
    assert r.returncode == 1
    assert b"PROBLEM: database: images tables are at schema version 99, newer than this berth knows (2)" in r.stdout
    with pytest.raises(RuntimeError, match="images tables are at schema version 99; this berth knows up to 2"):
        d.start()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT version FROM schema_versions WHERE store='images'").fetchone()[0] == 99
        conn.execute("UPDATE schema_versions SET version=2 WHERE store='images'")
        conn.commit()
    finally:
        conn.close()
    d.start()
    assert d.cli("run", "--rm", "busybox", "true").returncode == 0


def test_a_failed_step_leaves_the_previous_version(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each step is one transaction: a step that fails half-way leaves nothing of itself."""
    from berth.db import migrate, open_db, schema_version

    conn = open_db(str(tmp_path / "berth.db"))
    try:
        steps: list = ["CREATE TABLE IF NOT EXISTS t (a TEXT);\nINSERT INTO t VALUES ('one');"]
        assert migrate(conn, "demo", steps) == 0 and schema_version(conn, "demo") == 1
        steps.append("ALTER TABLE t ADD COLUMN b TEXT;\nINSERT INTO no_such_table VALUES (1);")
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, "demo", steps)
        assert schema_version(conn, "demo") == 1
        assert [r[1] for r in conn.execute("PRAGMA table_info(t)")] == ["a"]
        steps[1] = "ALTER TABLE t ADD COLUMN b TEXT DEFAULT 'two';"
        assert migrate(conn, "demo", steps) == 1 and migrate(conn, "demo", steps) == 2
        assert [tuple(r) for r in conn.execute("SELECT a, b FROM t")] == [("one", "two")]
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    finally:
        conn.close()


def test_blobs_of_an_older_layout_move_into_the_content_store(fresh_daemon: Daemon) -> None:
    """Before the content store, image configs lived in image/blobs/sha256 and push's gzip layers in
    distribution/blobs with a compressed_layers table: such a root checks clean, and berthd moves its
    blobs into content/, each kept by a reference, and drops the old directories and table."""
    d = fresh_daemon
    d.cli("tag", "busybox", "old:1")
    d.stop()
    j = os.path.join
    content = j(d.data_root, "content", "blobs", "sha256")
    configs = sorted(os.listdir(content))
    assert len(configs) == 1
    legacy = j(d.data_root, "image", "blobs", "sha256")
    os.makedirs(legacy)
    os.rename(j(content, configs[0]), j(legacy, configs[0]))
    gz = gzip.compress(b"a layer pushed before", mtime=0)
    gz_hex = hashlib.sha256(gz).hexdigest()
    os.makedirs(j(d.data_root, "distribution", "blobs"))
    with open(j(d.data_root, "distribution", "blobs", gz_hex), "wb") as f:
        f.write(gz)
    diff_id = "sha256:" + "d" * 64
    db = j(d.data_root, "berth.db")
    conn = sqlite3.connect(db)
    try:
        conn.execute("DROP TABLE content_refs")
        conn.execute("DELETE FROM schema_versions WHERE store='content'")
        conn.execute("CREATE TABLE compressed_layers (diff_id TEXT PRIMARY KEY, digest TEXT NOT NULL, "
                     "size INTEGER NOT NULL)")
        conn.execute("INSERT INTO compressed_layers VALUES (?,?,?)", (diff_id, "sha256:" + gz_hex, len(gz)))
        conn.execute("UPDATE schema_versions SET version=1 WHERE store='distribution'")
        conn.commit()
    finally:
        conn.close()
    r = berth_check(d)
    assert r.returncode == 0 and b"checked 1 images" in r.stdout and b"leftover" not in r.stdout, r.stdout

    d.start()
    assert d.cli("run", "--rm", "old:1", "true").returncode == 0
    d.stop()
    assert sorted(os.listdir(content)) == sorted([configs[0], gz_hex])
    assert not os.path.exists(j(d.data_root, "image")) and not os.path.exists(j(d.data_root, "distribution"))
    conn = sqlite3.connect(db)
    try:
        refs = dict(conn.execute("SELECT ref, digest FROM content_refs").fetchall())
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    iid = "sha256:" + configs[0]
    assert refs == {f"image.config/{iid}": iid, f"layer.gzip/{diff_id}": "sha256:" + gz_hex}
    assert "compressed_layers" not in tables
    r = berth_check(d)
    assert r.returncode == 0 and b"checked 2 blobs" in r.stdout, r.stdout
    d.start()
