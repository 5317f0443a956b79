"""Extraction with worker threads (a new layer's regular files made on a pool) must give the very
tree and tar-split that sequential extraction gives, refuse what it refuses, and a commit's layer
(hashed while written, extracted on the pool) must come back byte for byte."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from berth.layers.tarapply import UnsafeTarError, apply_tar
from berth.layers.tarsplit import assemble
from tests.conftest import Daemon, _daemon_fixture
from tests.imagetools import layer_tar
from tests.test_hostile_archives import CASES

Tree = dict[str, tuple[object, ...]]
_NOW_NS = 1_750_000_000 * 10**9  # later than any mtime the test archives carry


def _tree(root: str) -> Tree:
    """Every path below ``root`` with what a user could tell apart: type, mode, owner, mtime,
    contents or link target, overlay xattrs, and which paths share an inode."""
    out: Tree = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            s = os.lstat(p)
            kind = stat.S_IFMT(s.st_mode)
            body: object = None
            if stat.S_ISREG(s.st_mode):
                with open(p, "rb") as f:
                    body = f.read()
            elif stat.S_ISLNK(s.st_mode):
                body = os.readlink(p)
            elif stat.S_ISCHR(s.st_mode):
                body = s.st_rdev
            try:
                opaque = os.getxattr(p, "trusted.overlay.opaque", follow_symlinks=False)
            except OSError:
                opaque = None
            # what the archive gave no time for (implicit parents, whiteouts) carries "now"
            mtime = s.st_mtime_ns if s.st_mtime_ns < _NOW_NS else None
            first = inodes.setdefault(s.st_ino, rel) if not stat.S_ISDIR(s.st_mode) else rel
            out[rel] = (kind, stat.S_IMODE(s.st_mode), s.st_uid, s.st_gid, mtime, body, opaque, first)
    return out


def _extract(data: bytes, mode: str, threads: int) -> tuple[Tree, bytes, str]:
    """(tree, tar-split, error class name or "") of ``data`` extracted into a new directory;
    also checks that nothing appeared beside the root."""
    with tempfile.TemporaryDirectory(dir="/var/tmp") as d:
        tar = os.path.join(d, "l.tar")
        with open(tar, "wb") as f:
            f.write(data)
        root = os.path.join(d, "root")
        os.mkdir(root)
        split = io.BytesIO()
        err = ""
        try:
            apply_tar(tar, root, mode, split, threads=threads)  # type: ignore[arg-type]
        except (UnsafeTarError, OSError) as e:
            err = type(e).__name__
        assert sorted(os.listdir(d)) == ["l.tar", "root"]
        tree = _tree(root) if not err else {}
        if not err:
            out = io.BytesIO()
            split.seek(0)
            assemble(root, split, out)
            assert out.getvalue() == data
        return tree, split.getvalue() if not err else b"", err


@pytest.mark.parametrize("mode", ["overlay", "vfs", "plain"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_threaded_extraction_matches_sequential_on_the_hostile_cases(mode: str, case: str) -> None:
    data = layer_tar(CASES[case])
    seq = _extract(data, mode, 1)
    assert not seq[2]
    assert _extract(data, mode, 3) == seq


def _wide_tar(dirs: int, per_dir: int) -> bytes:
    """Many directories of small files, with modes, owners and replacements mixed in: enough
    entries in flight at once for the pool's threads to overlap."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in range(dirs):
            ti = tarfile.TarInfo(f"pkg/d{d:03d}")
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o750 if d % 7 else 0o2775, 1_600_000_000 + d
            tf.addfile(ti)
            for i in range(per_dir):
                data = f"{d}/{i}\n".encode() * (1 + (i * 37) % 300)
                fi = tarfile.TarInfo(f"pkg/d{d:03d}/f{i}.py")
                fi.size, fi.mtime = len(data), 1_500_000_000 + i
                fi.mode = (0o644, 0o755, 0o4755, 0o600)[i % 4]
                fi.uid, fi.gid = (0, 0) if i % 3 else (1000 + d, 2000 + i)
                tf.addfile(fi, io.BytesIO(data))
            if d % 5 == 0:  # a file written again later in the same directory
                fi = tarfile.TarInfo(f"pkg/d{d:03d}/f0.py")
                fi.size = 3
                tf.addfile(fi, io.BytesIO(b"new"))
            if d % 9 == 0:  # a link to a file that may still be in flight
                li = tarfile.TarInfo(f"pkg/d{d:03d}/hard")
                li.type, li.linkname = tarfile.LNKTYPE, f"pkg/d{d:03d}/f1.py"
                tf.addfile(li)
        wi = tarfile.TarInfo("pkg/.wh.d003")
        tf.addfile(wi, io.BytesIO(b""))
    return buf.getvalue()


@pytest.mark.parametrize("threads", [2, 4])
def test_threaded_extraction_of_many_directories_matches_sequential(threads: int) -> None:
    data = _wide_tar(60, 25)
    seq = _extract(data, "overlay", 1)
    assert not seq[2] and len(seq[0]) > 1500
    assert _extract(data, "overlay", threads) == seq


_NAMES = ["a", "b", "a/x", "a/y", "b/x", "a/x/z", "c"]


@st.composite
def _entries(draw: st.DrawFn) -> list[tuple[str, ...]]:
    """Layers of dirs, files, symlinks (inside, dangling, or escaping), hardlinks and whiteouts
    over a few names, so that entries replace, shadow and link to one another."""
    out: list[tuple[str, ...]] = []
    for _ in range(draw(st.integers(1, 14))):
        name = draw(st.sampled_from(_NAMES))
        kind = draw(st.sampled_from(["dir", "file", "file", "file", "symlink", "hardlink", "whiteout"]))
        if kind == "file":
            out.append((name, "file", draw(st.sampled_from(["", "one", "two\n" * 50]))))
        elif kind == "symlink":
            out.append((name, "symlink", draw(st.sampled_from(["a", "b/x", "../../up", "/a/x", "missing"]))))
        elif kind == "hardlink":
            out.append((name, "hardlink", draw(st.sampled_from(_NAMES))))
        elif kind == "whiteout":
            parent, _, base = name.rpartition("/")
            out.append(((parent + "/" if parent else "") + ".wh." + base, "file", ""))
        else:
            out.append((name + "/", "dir"))
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=_entries(), mode=st.sampled_from(["overlay", "vfs"]))
def test_threaded_extraction_matches_sequential_on_generated_layers(entries: list[tuple[str, ...]],
                                                                    mode: str) -> None:
    data = layer_tar(entries)  # type: ignore[arg-type]
    seq = _extract(data, mode, 1)
    par = _extract(data, mode, 3)
    assert par[2] == seq[2]  # both refuse (same kind of error) or both succeed
    assert par == seq


# -- through the daemon ------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["overlay", "vfs"])
def drv_daemon(request, busybox_tar: str) -> Iterator[Daemon]:  # type: ignore[no-untyped-def]
    yield from _daemon_fixture(request.param, busybox_tar)


def test_commit_layer_is_the_diff_byte_for_byte(drv_daemon: Daemon) -> None:
    """A commit of 600 changed files in 30 directories: the image's diff ID is the digest of the
    layer `docker save` returns, that layer holds exactly what `docker diff` lists, and a container
    of the image reads every file back."""
    c = drv_daemon.client()
    script = ("for d in $(seq 1 30); do mkdir -p /data/d$d; for f in $(seq 1 20); do "
              "echo \"$d $f\" > /data/d$d/f$f; done; done; chmod 600 /data/d7/f7; rm /etc/group")
    a = c.containers.run("busybox", ["sh", "-c", script], detach=True)
    try:
        a.wait()
        changed = {x["Path"] for x in c.api.diff(a.id)}
        img = a.commit(repository="par/commit", tag="1")
        diff_id = c.api.inspect_image(img.id)["RootFS"]["Layers"][-1]
        saved = b"".join(c.api.get_image(img.id))
        with tarfile.open(fileobj=io.BytesIO(saved)) as tf:
            manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
            top = tf.extractfile(manifest[0]["Layers"][-1]).read()  # type: ignore[union-attr]
        assert "sha256:" + hashlib.sha256(top).hexdigest() == diff_id
        with tarfile.open(fileobj=io.BytesIO(top)) as layer:
            members = {m.name.rstrip("/"): m for m in layer.getmembers()}
        assert {"/" + n.replace(".wh.", "") for n in members} == changed
        assert members["data/d7/f7"].mode == 0o600 and "etc/.wh.group" in members
        out = c.containers.run(img.id, ["sh", "-c", "cat /data/d*/f* | wc -l; cat /data/d30/f20; "
                                        "ls /etc/group 2>&1; true"], remove=True)
        assert out.split(b"\n")[:2] == [b"600", b"30 20"] and b"No such file" in out
        c.api.remove_image(img.id)
    finally:
        a.remove(force=True)


def _flags(path: str) -> int | None:
    import array
    import fcntl

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        buf = array.array("i", [0])
        fcntl.ioctl(fd, 0x80086601, buf, True)  # FS_IOC_GETFLAGS
        return buf[0]
    except OSError:
        return None
    finally:
        os.close(fd)


def test_layer_directories_are_spread_by_the_allocator(drv_daemon: Daemon) -> None:
    """The driver root carries ext4's top-of-hierarchy flag (``chattr +T``), so each new layer
    lands in a block group with free inodes (file creation measured 25x cheaper there)."""
    with tempfile.TemporaryDirectory(dir=drv_daemon.data_root) as probe:
        if _flags(probe) is None:
            pytest.skip("the data root's filesystem has no inode flags")
    root = os.path.join(drv_daemon.data_root, "overlay" if drv_daemon.driver == "overlay" else "vfs/dir")
    flags = _flags(root)
    assert flags is not None and flags & 0x00020000  # FS_TOPDIR_FL
    out = subprocess.run(["lsattr", "-d", root], capture_output=True, text=True, check=True).stdout
    assert "T" in out.split()[0]
