"""One suite, every storage driver (as containerd's snapshotter tests): what the layer store promises
must hold whichever driver lays the layers out.

Each test drives a real layer store (SQLite, tar-split records, real overlayfs mounts for overlay)
in a scratch data root under /var/tmp (overlay wants a real filesystem for its upper dir); every
mount is undone and every directory removed in ``finally``, even on failure.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from berth.db import open_db
from berth.fsutil import remove_tree
from berth.layers import mount as mnt
from berth.layers.drivers import SHARED_INIT, make_driver, overlay_supported
from berth.layers.store import LayerStore, chain_id
from tests.imagetools import Entry, layer_tar

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts, whiteout devices and chown need root")
DRIVERS = ["overlay", "vfs"]
BASE: list[Entry] = [("bin/", "dir"), ("bin/tool", "file", "#!/bin/sh\n", 0o755), ("etc/", "dir"),
                     ("etc/config", "file", "a=1\n"), ("d/", "dir"), ("d/gone", "file", "x"),
                     ("d/kept", "file", "k"), ("tree/", "dir"), ("tree/sub/", "dir"), ("tree/sub/leaf", "file", "l"),
                     ("o/", "dir"), ("o/old1", "file", "1"), ("o/old2", "file", "2"), ("link", "symlink", "bin/tool")]
INIT = {"dev", "dev/pts", "dev/shm", "proc", "sys", "etc/hostname", "etc/hosts", "etc/resolv.conf"}


@dataclass
class Env:
    store: LayerStore
    root: str

    def add_layer(self, entries: list[Entry] | bytes, parent: str | None) -> str:
        """Register a layer from a tar; its chain ID."""
        data = entries if isinstance(entries, bytes) else layer_tar(entries)
        diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
        fd, tar = tempfile.mkstemp(dir=self.root, suffix=".tar")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self.store.commit(self.store.extract(tar, diff_id, parent))
        finally:
            os.unlink(tar)
        return chain_id(parent, diff_id)

    def container(self, cid: str, parent: str | None) -> str:
        """A writable layer on ``parent``, mounted; the rootfs path."""
        self.store.create_rw(cid, parent)
        return self.store.mount_rw(cid)

    def diff(self, cid: str) -> bytes:
        buf = io.BytesIO()
        self.store.write_diff(cid, buf)
        return buf.getvalue()


@pytest.fixture(params=DRIVERS)
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    if request.param == "overlay" and not overlay_supported():
        pytest.skip("no overlayfs")
    root = tempfile.mkdtemp(prefix="berth-conformance-", dir="/var/tmp")
    conn = open_db(os.path.join(root, "berth.db"))
    try:
        driver = make_driver(request.param, root)
        yield Env(LayerStore(conn, os.path.join(root, "layers"), driver), root)
    finally:
        conn.close()
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        for p in sorted((p for p in points if p.startswith(root + "/")), key=len, reverse=True):
            mnt.unmount(p)
        trash = [os.path.join(root, "overlay", ".trash"), os.path.join(root, "vfs", ".trash")]
        deadline = time.monotonic() + 10  # the drivers' trash empties in background threads: let them finish
        while any(os.path.isdir(t) and os.listdir(t) for t in trash) and time.monotonic() < deadline:
            time.sleep(0.05)
        remove_tree(root)


def view(root: str, skip_init: bool = True) -> dict[str, tuple[Any, ...]]:
    """What a tree shows: type, mode, owner, content or link target, for every path."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if skip_init and (rel in INIT or rel.startswith(("proc/", "sys/", "dev/"))):
                continue
            st = os.lstat(path)
            extra: Any = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    extra = f.read()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra)
    return out


def kinds(changes: list[dict[str, Any]]) -> dict[str, int]:
    return {c["Path"]: c["Kind"] for c in changes}


def tar_names(data: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name.rstrip("/") for m in tf.getmembers()}


def edit(rootfs: str) -> None:
    """One of each change: add, modify, chmod, delete a file, delete a tree, replace a dir's contents."""
    j = os.path.join
    with open(j(rootfs, "etc", "config"), "a") as f:
        f.write("b=2\n")
    with open(j(rootfs, "new"), "w") as f:
        f.write("added\n")
    os.chmod(j(rootfs, "bin", "tool"), 0o700)
    os.unlink(j(rootfs, "d", "gone"))
    remove_tree(j(rootfs, "tree"))
    remove_tree(j(rootfs, "o"))  # gone and made again: overlay records an opaque dir
    os.mkdir(j(rootfs, "o"))
    with open(j(rootfs, "o", "fresh"), "w") as f:
        f.write("f")


EXPECTED = {"/bin": 0, "/bin/tool": 0, "/d": 0, "/d/gone": 2, "/etc": 0, "/etc/config": 0, "/new": 1, "/o": 0,
            "/o/fresh": 1, "/o/old1": 2, "/o/old2": 2, "/tree": 2}


def test_prepare_and_mount(env: Env) -> None:
    base = env.add_layer(BASE, None)
    top = env.add_layer([("bin/", "dir"), ("bin/second", "file", "2")], base)
    rootfs = env.container("c1", top)
    seen = view(rootfs, skip_init=False)
    assert seen["bin/second"][4] == b"2" and seen["etc/config"][4] == b"a=1\n" and seen["link"][4] == "bin/tool"
    assert INIT <= set(seen), "the runtime's mount points exist before the container starts"
    assert env.store.mount_rw("c1") == rootfs  # idempotent
    assert env.store.changes("c1") == []  # the init entries are no change of the container's
    with open(os.path.join(rootfs, "made"), "w") as f:
        f.write("m")
    env.store.unmount_rw("c1")
    assert view(env.store.mount_rw("c1"))["made"][4] == b"m"  # the writable layer outlives a mount


def test_image_whiteouts_and_opaque_dirs(env: Env) -> None:
    base = env.add_layer(BASE, None)
    top = env.add_layer([("d/", "dir"), ("d/.wh.gone", "file", ""), ("o/", "dir"), ("o/.wh..wh..opq", "file", ""),
                         ("o/new", "file", "n"), (".wh.tree", "file", "")], base)
    seen = view(env.container("c1", top))
    assert "d/gone" not in seen and "d/kept" in seen and "tree" not in seen and "tree/sub/leaf" not in seen
    assert sorted(p for p in seen if p.startswith("o/")) == ["o/new"]
    assert env.store.changes("c1") == []


def test_changes(env: Env) -> None:
    base = env.add_layer(BASE, None)
    edit(env.container("c1", base))
    got = env.store.changes("c1")
    assert [c["Path"] for c in got] == sorted(c["Path"] for c in got)
    assert kinds(got) == EXPECTED


def test_diff_tar(env: Env) -> None:
    base = env.add_layer(BASE, None)
    edit(env.container("c1", base))
    names = tar_names(env.diff("c1"))
    assert {"new", "etc/config", "bin/tool", "d/.wh.gone", ".wh.tree", "o/fresh"} <= names
    assert not names & {"d/kept", "link", "tree/sub/leaf", "o/old1"}, "only changes go in a layer"
    assert not names & {n for n in INIT if "/" in n or n in ("dev", "proc", "sys")}, "init entries never do"
    # the lower's entries below a replaced dir are deleted: by one opaque marker or by a whiteout each
    assert "o/.wh..wh..opq" in names or {"o/.wh.old1", "o/.wh.old2"} <= names


def test_commit_reproduces_the_container(env: Env) -> None:
    """A container's diff, applied on its image as a new layer, shows what the container showed."""
    base = env.add_layer(BASE, None)
    rootfs = env.container("c1", base)
    edit(rootfs)
    committed = env.add_layer(env.diff("c1"), base)
    again = env.container("c2", committed)
    assert view(again) == view(rootfs)
    assert env.store.changes("c2") == []


def test_removal(env: Env) -> None:
    base = env.add_layer(BASE, None)
    rootfs = env.container("c1", base)
    edit(rootfs)
    env.store.remove_rw("c1")
    assert not os.path.exists(os.path.join(rootfs, "new")) and not mnt.is_mounted(rootfs)
    with pytest.raises(KeyError):
        env.store.changes("c1")
    assert env.store.prune(set()) == [base]
    assert env.store.all() == []
    assert os.listdir(os.path.join(env.root, "layers", "tarsplit")) == []
    driver_dir = os.path.join(env.root, env.store.driver.name)
    left = [n for base_dir, dirs, _ in os.walk(driver_dir) for n in dirs
            if os.path.dirname(os.path.join(base_dir, n)) == driver_dir or base_dir.endswith("/dir")]
    # the driver's own layout stays (overlay's one init layer, shared by every container)
    assert not [n for n in left if n not in ("l", "empty", ".trash", "dir", SHARED_INIT)], left
    if os.path.isdir(os.path.join(driver_dir, "l")):  # one short link each for what is left: the init layer
        assert [os.readlink(os.path.join(driver_dir, "l", n)) for n in os.listdir(os.path.join(driver_dir, "l"))] \
            == [f"../{SHARED_INIT}/diff"]


def test_overlay_containers_share_one_init_layer_and_a_half_made_one_is_remade(env: Env) -> None:
    """Every container's rootfs has the init entries (mount points, the /etc files the runtime binds
    over) from one shared read-only layer; a crash that left that layer half-made is repaired at start."""
    if env.store.driver.name != "overlay":
        pytest.skip("the shared init layer is overlay's")
    base = env.add_layer(BASE, None)
    roots = [env.container(f"s{i}", base) for i in range(2)]
    for rootfs in roots:
        for p in ("etc/hostname", "etc/hosts", "etc/resolv.conf", "proc", "sys", "dev/shm"):
            assert os.path.lexists(os.path.join(rootfs, p)), p
    driver_dir = os.path.join(env.root, "overlay")
    assert not [n for n in os.listdir(driver_dir) if n.endswith("-init")]  # none of their own
    with open(os.path.join(roots[0], "etc", "hostname"), "w") as f:  # a write lands in the container's upper
        f.write("mine\n")
    assert os.path.getsize(os.path.join(roots[1], "etc", "hostname")) == 0
    assert os.path.getsize(os.path.join(driver_dir, SHARED_INIT, "diff", "etc", "hostname")) == 0
    for i in range(2):
        env.store.remove_rw(f"s{i}")
    # a half-made shared layer (no link file: the crash came before it was finished) is made afresh
    os.unlink(os.path.join(driver_dir, SHARED_INIT, "link"))
    remove_tree(os.path.join(driver_dir, SHARED_INIT, "diff", "proc"))
    type(env.store.driver)(driver_dir)
    assert os.path.isdir(os.path.join(driver_dir, SHARED_INIT, "diff", "proc"))
    assert os.path.isfile(os.path.join(driver_dir, SHARED_INIT, "link"))
