"""Container changes, commit layer tars and docker-cp archives, on real overlayfs mounts (no daemon).

Every mount made here is unmounted and every scratch dir removed in ``finally``, even on failure.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest

from berth.containers import archive
from berth.containers.archive import (
    GO_MODE_DIR,
    GO_MODE_SYMLINK,
    export_rootfs,
    extract_archive,
    stat_path,
    write_archive,
)
from berth.errors import InvalidParameter, NotFound
from berth.fsutil import remove_tree
from berth.layers import diff as rwdiff
from berth.layers.diff import changes_overlay, changes_vfs, write_layer_tar_overlay, write_layer_tar_vfs
from berth.layers.tarapply import apply_tar

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="overlay mounts, mknod and chown need root")


# ---------------------------------------------------------------------------------------------
# helpers


def _mounts_under(path: str) -> list[str]:
    with open("/proc/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    return [p for p in points if p == path or p.startswith(path.rstrip("/") + "/")]


def _scratch(base: str) -> Iterator[str]:
    import tempfile

    d = tempfile.mkdtemp(prefix="berth-rwdiff-", dir=base)
    try:
        yield d
    finally:
        for point in sorted(_mounts_under(d), key=len, reverse=True):
            subprocess.run(["umount", point], check=False)
        remove_tree(d)


@pytest.fixture
def scratch() -> Iterator[str]:
    yield from _scratch("/var/tmp")  # overlay wants a real filesystem for its upper dir


def _mount(lowers: list[str], upper: str, work: str, target: str) -> None:
    for d in (upper, work, target):
        os.makedirs(d, exist_ok=True)
    opts = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, target], check=True, capture_output=True)


def _umount(target: str) -> None:
    subprocess.run(["umount", target], check=True)


def _write(path: str, data: str | bytes, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)


def _listing(root: str) -> dict[str, tuple[Any, ...]]:
    """What a tree shows: type, mode, owner, content digest / link / device, file mtime, user xattrs."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    extra: Any = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = st.st_rdev
            else:
                extra = None
            xattrs = {} if stat.S_ISLNK(st.st_mode) else {
                k: os.getxattr(path, k) for k in os.listxattr(path) if k.startswith("user.")}
            mtime = None if stat.S_ISLNK(st.st_mode) else int(st.st_mtime)
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra, mtime,
                        sorted(xattrs.items()))
    return out


def _raw_names(data: bytes) -> list[str]:
    """Entry names exactly as stored (tarfile strips a directory's trailing "/")."""
    names: list[str] = []
    pos, pax_path = 0, None
    while pos + 512 <= len(data):
        block = data[pos:pos + 512]
        if block == b"\0" * 512:
            break
        size = int(block[124:136].rstrip(b"\0 ") or b"0", 8)
        kind = block[156:157]
        body = data[pos + 512:pos + 512 + size]
        if kind == b"x":
            for rec in body.split(b"\n"):
                if b" path=" in rec:
                    pax_path = rec.split(b"=", 1)[1].decode()
        else:
            names.append(pax_path or block[:100].rstrip(b"\0").decode())
            pax_path = None
        pos += 512 + (size + 511) // 512 * 512
    return names


def _tar_bytes(entries: list[tuple[str, str, bytes | str]]) -> bytes:
    """Build a tar from (kind, name, data-or-linkname) with kind file|dir|sym|link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for kind, name, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mode = 0o644
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, str(data)
                tf.addfile(ti)
            elif kind == "link":
                ti.type, ti.linkname = tarfile.LNKTYPE, str(data)
                tf.addfile(ti)
            else:
                raw = data.encode() if isinstance(data, str) else data
                ti.size = len(raw)
                tf.addfile(ti, io.BytesIO(raw))
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# the same change set made through an overlay mount and on a vfs copy


def _make_lower(lower: str) -> None:
    _write(f"{lower}/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
    _write(f"{lower}/etc/hosts", "127.0.0.1 localhost\n")
    _write(f"{lower}/etc/keep", "keep\n")
    _write(f"{lower}/d1/sub/f", "f\n")
    _write(f"{lower}/d1/other", "other\n")
    _write(f"{lower}/d2/g", "g\n")
    _write(f"{lower}/d2/h/deep", "deep\n")
    _write(f"{lower}/top", "top\n")
    _write(f"{lower}/bin/busybox", b"\x7fELF", 0o755)
    os.symlink("busybox", f"{lower}/bin/sh")
    _write(f"{lower}/chmodme", "chmod\n")


def _make_changes(root: str) -> None:
    _write(f"{root}/new.txt", "new\n")
    os.setxattr(f"{root}/new.txt", "user.test", b"\xff\x00bin")
    _write(f"{root}/newdir/x/y", "y\n")
    _write(f"{root}/newdir/h1", "linked\n")
    os.link(f"{root}/newdir/h1", f"{root}/newdir/h2")
    os.symlink("/etc/passwd", f"{root}/newlink")
    os.mkfifo(f"{root}/fifo", 0o600)
    os.mkdir(f"{root}/dev")
    os.mknod(f"{root}/dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    with open(f"{root}/etc/hosts", "a") as f:
        f.write("10.0.0.1 other\n")
    os.chmod(f"{root}/chmodme", 0o600)
    os.chown(f"{root}/etc/keep", 1000, 1000)  # metadata only: overlay copies it up
    os.unlink(f"{root}/top")
    remove_tree(f"{root}/d1/sub")
    remove_tree(f"{root}/d2")  # a directory removed and made again: opaque in overlay
    os.mkdir(f"{root}/d2")
    _write(f"{root}/d2/n", "n\n")


EXPECTED = sorted([
    ("/chmodme", 0), ("/d1", 0), ("/d1/sub", 2), ("/d2", 0), ("/d2/g", 2), ("/d2/h", 2), ("/d2/n", 1),
    ("/dev", 1), ("/dev/null", 1), ("/etc", 0), ("/etc/hosts", 0), ("/etc/keep", 0), ("/fifo", 1),
    ("/new.txt", 1), ("/newdir", 1), ("/newdir/h1", 1), ("/newdir/h2", 1), ("/newdir/x", 1),
    ("/newdir/x/y", 1), ("/newlink", 1), ("/top", 2),
])


def _pairs(changes: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(c["Path"], c["Kind"]) for c in changes]


def _overlay_roundtrip(d: str) -> None:
    lower, upper, merged = f"{d}/lower", f"{d}/upper", f"{d}/merged"
    _make_lower(lower)
    _mount([lower], upper, f"{d}/work", merged)
    try:
        _make_changes(merged)
        want = _listing(merged)
    finally:
        _umount(merged)

    changes = changes_overlay(upper, [lower])
    assert _pairs(changes) == EXPECTED  # sorted by path, as Docker returns them

    tar1, tar2 = io.BytesIO(), io.BytesIO()
    write_layer_tar_overlay(upper, [lower], tar1)
    write_layer_tar_overlay(upper, [lower], tar2)
    assert tar1.getvalue() == tar2.getvalue()  # deterministic
    names = _raw_names(tar1.getvalue())
    assert all(not n.startswith("/") for n in names)
    assert "d2/" in names and names[names.index("d2/") + 1] == "d2/.wh..wh..opq"
    assert ".wh.top" in names and "d1/.wh.sub" in names
    assert "etc/" in names and "newdir/x/" in names
    assert not any("d2/g" in n or "d2/.wh.g" in n for n in names)  # the opaque marker covers them
    with tarfile.open(fileobj=io.BytesIO(tar1.getvalue())) as tf:
        members = {m.name: m for m in tf}
    assert members["dev/null"].ischr() and (members["dev/null"].devmajor, members["dev/null"].devminor) == (1, 3)
    assert members["fifo"].isfifo()
    assert members["newlink"].issym() and members["newlink"].linkname == "/etc/passwd"
    links = [members["newdir/h1"], members["newdir/h2"]]
    assert links[0].isreg() and links[1].islnk() and links[1].linkname == "newdir/h1"
    assert members["etc/keep"].uid == 1000 and members["chmodme"].mode == 0o600
    assert members["new.txt"].pax_headers["SCHILY.xattr.user.test"].encode("utf-8", "surrogateescape") \
        == b"\xff\x00bin"
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay") for m in members.values() for k in m.pax_headers)

    # the tar, applied on the same lower, shows the same tree
    tar_path = f"{d}/layer.tar"
    with open(tar_path, "wb") as f:
        f.write(tar1.getvalue())
    upper2, merged2 = f"{d}/upper2", f"{d}/merged2"
    os.makedirs(upper2)
    apply_tar(tar_path, upper2, "overlay")
    assert _pairs(changes_overlay(upper2, [lower])) == EXPECTED
    _mount([lower], upper2, f"{d}/work2", merged2)
    try:
        assert _listing(merged2) == want
        assert os.stat(f"{merged2}/newdir/h1").st_ino == os.stat(f"{merged2}/newdir/h2").st_ino
    finally:
        _umount(merged2)


def test_overlay_changes_and_layer_tar(scratch: str) -> None:
    _overlay_roundtrip(scratch)


def test_overlay_on_tmp() -> None:
    """/tmp works as well when it is a real filesystem (or a tmpfs new enough for overlay uppers)."""
    gen = _scratch("/tmp")
    d = next(gen)
    try:
        try:
            os.makedirs(f"{d}/probe-lower")
            _mount([f"{d}/probe-lower"], f"{d}/probe-upper", f"{d}/probe-work", f"{d}/probe")
        except subprocess.CalledProcessError as e:
            pytest.skip(f"/tmp cannot hold an overlay upper here: {e.stderr!r}")
        _umount(f"{d}/probe")
        _overlay_roundtrip(f"{d}/t")
    finally:
        gen.close()


def test_overlay_lower_whiteouts_and_opaque(scratch: str) -> None:
    """Lookups follow overlay rules through several lowers: whiteouts and opaque dirs hide names."""
    l1, l2 = f"{scratch}/l1", f"{scratch}/l2"
    _write(f"{l1}/a/x", "x")
    _write(f"{l1}/a/y", "y")
    _write(f"{l1}/b", "b")
    _write(f"{l1}/c/old", "old")
    with open(f"{scratch}/l2.tar", "wb") as f:
        f.write(_tar_bytes([("file", ".wh.b", ""), ("dir", "a", ""), ("file", "a/.wh..wh..opq", ""),
                            ("file", "a/z", "z")]))
    os.makedirs(l2)
    apply_tar(f"{scratch}/l2.tar", l2, "overlay")
    upper, merged = f"{scratch}/upper", f"{scratch}/merged"
    _mount([l2, l1], upper, f"{scratch}/work", merged)
    try:
        assert sorted(os.listdir(f"{merged}/a")) == ["z"]
        _write(f"{merged}/b", "new b")  # hidden by l2's whiteout: added, not modified
        remove_tree(f"{merged}/a")
        os.mkdir(f"{merged}/a")
        _write(f"{merged}/a/q", "q")
        remove_tree(f"{merged}/c")
        os.makedirs(f"{merged}/c/sub")
    finally:
        _umount(merged)
    assert _pairs(changes_overlay(upper, [l2, l1])) == [
        ("/a", 0), ("/a/q", 1), ("/a/z", 2), ("/b", 1), ("/c", 0), ("/c/old", 2), ("/c/sub", 1)]
    # without the lowers everything in the upper is new
    assert _pairs(changes_overlay(upper, [])) == [("/a", 1), ("/a/q", 1), ("/b", 1), ("/c", 1), ("/c/sub", 1)]


def test_vfs_changes_and_layer_tar(scratch: str) -> None:
    base, rw = f"{scratch}/base", f"{scratch}/rw"
    _make_lower(base)
    subprocess.run(["cp", "-a", base, rw], check=True)
    assert changes_vfs(base, rw) == []
    _make_changes(rw)
    assert _pairs(changes_vfs(base, rw)) == EXPECTED
    want = _listing(rw)

    buf = io.BytesIO()
    write_layer_tar_vfs(base, rw, buf)
    names = _raw_names(buf.getvalue())
    assert "d2/.wh.g" in names and "d2/.wh.h" in names and ".wh.top" in names and "d1/.wh.sub" in names
    assert not any(n.startswith("d2/h/") or n.startswith("/") for n in names)
    assert "passwd" not in " ".join(names)  # unchanged files stay out
    tar_path = f"{scratch}/layer.tar"
    with open(tar_path, "wb") as f:
        f.write(buf.getvalue())

    # vfs apply: a copy of the base plus the layer equals the container dir
    applied = f"{scratch}/applied"
    subprocess.run(["cp", "-a", base, applied], check=True)
    apply_tar(tar_path, applied, "vfs")
    assert _listing(applied) == want
    assert changes_vfs(applied, rw) == []

    # and the same layer works for overlay
    upper, merged = f"{scratch}/upper", f"{scratch}/merged"
    os.makedirs(upper)
    apply_tar(tar_path, upper, "overlay")
    _mount([base], upper, f"{scratch}/work", merged)
    try:
        assert _listing(merged) == want
    finally:
        _umount(merged)


def test_vfs_details(scratch: str) -> None:
    base, rw = f"{scratch}/base", f"{scratch}/rw"
    os.makedirs(f"{base}/d")
    os.symlink("aa", f"{base}/lnk")
    _write(f"{base}/f", "same size")
    _write(f"{base}/d/becomes_dir", "file")
    subprocess.run(["cp", "-a", base, rw], check=True)
    st = os.lstat(f"{rw}/lnk")
    os.unlink(f"{rw}/lnk")
    os.symlink("bb", f"{rw}/lnk")  # same size; same mtime below: only the target differs
    os.utime(f"{rw}/lnk", ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    os.unlink(f"{rw}/d/becomes_dir")
    _write(f"{rw}/d/becomes_dir/inner", "i")
    assert _pairs(changes_vfs(base, rw)) == [
        ("/d", 0), ("/d/becomes_dir", 0), ("/d/becomes_dir/inner", 1), ("/lnk", 0)]
    # an image without layers: everything was added
    assert _pairs(changes_vfs("", rw)) == [
        ("/d", 1), ("/d/becomes_dir", 1), ("/d/becomes_dir/inner", 1), ("/f", 1), ("/lnk", 1)]
    buf = io.BytesIO()
    write_layer_tar_vfs("", rw, buf)
    assert _raw_names(buf.getvalue()) == ["d/", "d/becomes_dir/", "d/becomes_dir/inner", "f", "lnk"]


# ---------------------------------------------------------------------------------------------
# docker cp primitives confined to the container rootfs


MARKER = "container-passwd-" + os.urandom(6).hex() + "\n"


@pytest.fixture
def rootfs(scratch: str) -> str:
    root = f"{scratch}/rootfs"
    _write(f"{root}/etc/passwd", MARKER)
    _write(f"{root}/etc/hosts", "hosts\n")
    os.makedirs(f"{root}/tmp")
    os.symlink("/", f"{root}/evil")
    os.symlink("../../..", f"{root}/up")
    os.symlink("/etc/passwd", f"{root}/abs")
    os.symlink("../../../../etc", f"{root}/etc/parent_etc")
    return root


def _archive(root: str, path: str) -> tuple[list[str], dict[str, tarfile.TarInfo], dict[str, bytes]]:
    buf = io.BytesIO()
    write_archive(root, path, buf, "ctr")
    raw = buf.getvalue()
    members, data = {}, {}
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        for m in tf:
            members[m.name] = m
            if m.isreg():
                f = tf.extractfile(m)
                assert f is not None
                data[m.name] = f.read()
    return _raw_names(raw), members, data


def test_stat_path_stays_inside(rootfs: str) -> None:
    for path in ("/evil/etc/passwd", "/up/etc/passwd", "/up/up/evil/etc/passwd", "/etc/parent_etc/passwd",
                 "/../../etc/passwd"):
        st = stat_path(rootfs, path, "ctr")
        assert st["name"] == "passwd" and st["size"] == len(MARKER), path
        assert st["mode"] == 0o644 and st["linkTarget"] == ""
    st = stat_path(rootfs, "/abs", "ctr")
    assert st["mode"] & GO_MODE_SYMLINK and st["mode"] & 0o777 == 0o777
    assert st["linkTarget"] == "/etc/passwd" and st["name"] == "abs"
    assert stat_path(rootfs, "/evil", "ctr")["linkTarget"] == "/"
    assert stat_path(rootfs, "/up", "ctr")["linkTarget"] == "/"
    assert stat_path(rootfs, "/etc/parent_etc", "ctr")["linkTarget"] == "/etc"
    st = stat_path(rootfs, "/evil/", "ctr")
    assert st["name"] == "evil" and st["mode"] == GO_MODE_DIR | 0o755 and st["linkTarget"] == ""
    assert stat_path(rootfs, "/", "ctr")["name"] == "/"
    assert stat_path(rootfs, "/etc/.", "ctr")["name"] == "."
    assert stat_path(rootfs, "/etc", "ctr")["mtime"].endswith("Z")
    with pytest.raises(NotFound) as e:
        stat_path(rootfs, "/nope/x", "ctr")
    assert str(e.value) == "Could not find the file /nope/x in container ctr"
    with pytest.raises(NotFound):
        stat_path(rootfs, "/etc/passwd/x", "ctr")
    with pytest.raises(InvalidParameter):
        stat_path(rootfs, "/etc/passwd/", "ctr")


def test_write_archive_stays_inside(rootfs: str) -> None:
    names, _members, data = _archive(rootfs, "/evil/etc/passwd")
    assert names == ["passwd"] and data["passwd"] == MARKER.encode()
    names, _members, data = _archive(rootfs, "/up/etc")
    assert names[0] == "etc/" and "etc/passwd" in names and data["etc/passwd"] == MARKER.encode()
    assert _archive(rootfs, "/up/etc")[1]["etc/parent_etc"].issym()  # links inside are not followed
    names, members, _ = _archive(rootfs, "/evil")
    assert names == ["evil"] and members["evil"].issym() and members["evil"].linkname == "/"
    names, members, data = _archive(rootfs, "/evil/.")  # the container's "/", not the host's
    assert "etc/passwd" in names and data["etc/passwd"] == MARKER.encode() and members["up"].issym()
    assert not any(n.startswith("evil/") or n.startswith("./") for n in names)
    names, _m, data = _archive(rootfs, "/evil/")  # rebased to the requested name
    assert names[0] == "evil/" and data["evil/etc/passwd"] == MARKER.encode()
    names, _m, _d = _archive(rootfs, "/etc/.")
    assert sorted(names) == ["hosts", "parent_etc", "passwd"]
    with pytest.raises(NotFound):
        _archive(rootfs, "/missing")


def test_resolution_race_cannot_reach_host(rootfs: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the container swaps a resolved directory for a symlink to "/" between resolution and
    use, the kernel's in-root walk still lands inside the container, never on the host."""
    from berth import safepath

    monkeypatch.setattr(safepath, "resolve_rel", lambda root_fd, rel, follow_last=True: "evil/etc/passwd")
    _names, _members, data = _archive(rootfs, "/etc/passwd")
    assert data["passwd"] == MARKER.encode()  # the container's /etc/passwd, not the host's


def test_extract_archive_is_confined(rootfs: str, scratch: str) -> None:
    tag = os.urandom(6).hex()
    tar_path = f"{scratch}/in.tar"

    def put(entries: list[tuple[str, str, bytes | str]], path: str, **kw: Any) -> None:
        with open(tar_path, "wb") as f:
            f.write(_tar_bytes(entries))
        extract_archive(rootfs, path, tar_path, container_name="ctr", **kw)

    # the target path resolves inside the container: "/evil/tmp" is the container's /tmp
    put([("file", f"a-{tag}", "a")], "/evil/tmp")
    assert os.path.exists(f"{rootfs}/tmp/a-{tag}") and not os.path.exists(f"/tmp/a-{tag}")
    # absolute names and symlinks in the archive stay under the target
    put([("sym", "l", "/"), ("file", f"l/pwned-{tag}", "x"), ("file", f"/abs-{tag}", "y")], "/tmp")
    assert os.path.exists(f"{rootfs}/tmp/pwned-{tag}") and not os.path.exists(f"/pwned-{tag}")
    assert os.path.exists(f"{rootfs}/tmp/abs-{tag}") and not os.path.exists(f"/abs-{tag}")
    for hostile in ([("file", f"../../../../../../tmp/esc-{tag}", "x")],
                    [("sym", "rel", "../../../../../../../tmp"), ("file", f"rel/esc-{tag}", "x")],
                    [("link", f"hl-{tag}", "../../../../../etc/passwd")]):
        with pytest.raises(InvalidParameter):
            put(hostile, "/tmp")
    assert not os.path.exists(f"/tmp/esc-{tag}")
    # a hardlink names a path inside the target, never a host file
    with pytest.raises(InvalidParameter):
        put([("link", f"hl-{tag}", "/etc/shadow")], "/tmp")
    with open("/etc/passwd", "rb") as f:
        host_passwd = f.read()
    assert MARKER.encode() not in host_passwd

    with pytest.raises(InvalidParameter) as e:
        put([("file", "x", "x")], "/etc/passwd")
    assert str(e.value) == "extraction point is not a directory"
    with pytest.raises(NotFound):
        put([("file", "x", "x")], "/nowhere")

    # noOverwriteDirNonDir
    with pytest.raises(InvalidParameter, match="cannot overwrite directory"):
        put([("file", "etc", "x")], "/", no_overwrite_dir_non_dir=True)
    with pytest.raises(InvalidParameter, match="cannot overwrite non-directory"):
        put([("dir", "etc/passwd", "")], "/", no_overwrite_dir_non_dir=True)
    with pytest.raises(InvalidParameter, match="cannot overwrite non-directory"):
        put([("file", "etc/passwd/inner", "x")], "/", no_overwrite_dir_non_dir=True)
    assert open(f"{rootfs}/etc/passwd").read() == MARKER  # refused before anything was written
    put([("dir", "etc", ""), ("file", "etc/new", "n"), ("file", "x", "1"), ("file", "x", "2")], "/",
        no_overwrite_dir_non_dir=True)
    assert open(f"{rootfs}/etc/new").read() == "n"
    put([("file", "tmp", "now a file")], "/")  # without the flag Docker replaces it
    assert os.path.isfile(f"{rootfs}/tmp")


def test_export_rootfs(rootfs: str) -> None:
    buf = io.BytesIO()
    export_rootfs(rootfs, buf)
    names = _raw_names(buf.getvalue())
    assert names == ["abs", "etc/", "etc/hosts", "etc/parent_etc", "etc/passwd", "evil", "tmp/", "up"]
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tf:
        members = {m.name: m for m in tf}
        f = tf.extractfile(members["etc/passwd"])
        assert f is not None and f.read() == MARKER.encode()
    assert members["evil"].issym() and members["evil"].linkname == "/"


def test_go_file_mode_bits() -> None:
    assert archive.go_file_mode(stat.S_IFDIR | 0o1777) == GO_MODE_DIR | archive.GO_MODE_STICKY | 0o777
    assert archive.go_file_mode(stat.S_IFREG | 0o4755) == archive.GO_MODE_SETUID | 0o755
    assert archive.go_file_mode(stat.S_IFCHR | 0o666) == archive.GO_MODE_DEVICE | archive.GO_MODE_CHAR_DEVICE | 0o666
    assert archive.go_file_mode(stat.S_IFIFO | 0o600) == archive.GO_MODE_NAMED_PIPE | 0o600
    assert archive.rfc3339_nano(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
    assert archive.rfc3339_nano(0) == "1970-01-01T00:00:00Z"
    assert rwdiff.ADDED == 1 and rwdiff.DELETED == 2 and rwdiff.MODIFIED == 0
