"""Layer tars: safe extraction, whiteouts on both drivers, byte-exact reassembly, many layers."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile

import docker
import pytest

from berth.layers.tarapply import UnsafeTarError, apply_tar
from berth.layers.tarsplit import assemble
from tests.conftest import Daemon, cleanup_daemon, new_daemon, store_snapshot
from tests.imagetools import config_for, layer_tar, load_failure, save_tar


def _apply(tmp_path, entries_or_bytes, mode="overlay", name="root"):  # type: ignore[no-untyped-def]
    data = entries_or_bytes if isinstance(entries_or_bytes, bytes) else layer_tar(entries_or_bytes)
    tar = tmp_path / f"{name}.tar"
    tar.write_bytes(data)
    root = tmp_path / name
    root.mkdir(exist_ok=True)
    split = io.BytesIO()
    apply_tar(str(tar), str(root), mode, split)
    return root, data, split


@pytest.mark.parametrize("entries", [
    [("../escape", "file", "x")],
    [("a/../../escape", "file", "x")],
    [("evil", "symlink", "../../../../etc")],
    [("d/", "dir"), ("d/evil", "symlink", "../../outside")],
    [("link", "hardlink", "../../etc/passwd")],
], ids=["dotdot", "nested-dotdot", "symlink-up", "nested-symlink-up", "hardlink-out"])
def test_hostile_entries_are_refused(tmp_path, entries) -> None:  # type: ignore[no-untyped-def]
    outside = tmp_path / "outside"
    with pytest.raises(UnsafeTarError):
        _apply(tmp_path, entries)
    assert not (tmp_path / "escape").exists()
    assert not outside.exists()


def test_absolute_symlink_is_followed_inside_the_root(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``etc -> /victim`` then ``etc/x``: the file lands in root/victim, never in /victim."""
    victim = tmp_path / "victim"
    victim.mkdir()
    root, _, _ = _apply(tmp_path, [("etc", "symlink", str(victim)), ("etc/x", "file", "inside")])
    assert os.listdir(victim) == []
    inside = root / str(victim).lstrip("/") / "x"
    assert inside.read_text() == "inside"


def test_absolute_entry_names_stay_inside(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, _, _ = _apply(tmp_path, [("/abs.txt", "file", "ok")])
    assert (root / "abs.txt").read_text() == "ok"


def test_overlay_whiteouts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, _, _ = _apply(tmp_path, [("d/", "dir"), ("d/.wh.gone", "file", ""), ("o/", "dir"),
                                   ("o/.wh..wh..opq", "file", ""), ("o/kept", "file", "k")])
    st = os.lstat(root / "d" / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(root / "o", "trusted.overlay.opaque") == b"y"
    assert (root / "o" / "kept").read_text() == "k"
    assert not (root / "d" / ".wh.gone").exists()


def test_vfs_whiteouts_delete(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    root.mkdir()
    (root / "d").mkdir()
    (root / "d" / "gone").write_text("old")
    (root / "o").mkdir()
    (root / "o" / "old").write_text("old")
    _apply(tmp_path, [("d/.wh.gone", "file", ""), ("o/.wh..wh..opq", "file", ""), ("o/new", "file", "n")], "vfs")
    assert not (root / "d" / "gone").exists()
    assert sorted(os.listdir(root / "o")) == ["new"]


def test_tar_split_reassembles_byte_for_byte(tmp_path) -> None:  # type: ignore[no-untyped-def]
    entries = [("a/", "dir"), ("a/f", "file", os.urandom(5000)), ("a/l", "symlink", "f"),
               ("a/h", "hardlink", "a/f"), ("b/" + "x" * 150, "file", "long name"), ("a/f", "file", "rewritten"),
               ("a/.wh.zap", "file", "")]
    root, data, split = _apply(tmp_path, entries)
    out = io.BytesIO()
    split.seek(0)
    assemble(str(root), split, out)
    assert hashlib.sha256(out.getvalue()).hexdigest() == hashlib.sha256(data).hexdigest()


def test_truncated_tar_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = layer_tar([("big", "file", os.urandom(10000))])
    with pytest.raises(UnsafeTarError):
        _apply(tmp_path, data[:3000])


@pytest.mark.parametrize("case", ["traversal", "escaping-symlink", "wrong-digest", "truncated"])
def test_hostile_image_archive_is_400_and_changes_nothing(daemon: Daemon, case: str) -> None:
    c = daemon.client()
    good = layer_tar([("ok/", "dir"), ("ok/file", "file", "fine")])
    if case == "traversal":
        bad = layer_tar([("ok/", "dir"), ("../../../../tmp/berth-pwned", "file", "x")])
        data = save_tar([([good, bad], "hostile:1", None)])
    elif case == "escaping-symlink":
        bad = layer_tar([("esc", "symlink", "../../../../../../tmp"), ("esc/berth-pwned", "file", "x")])
        data = save_tar([([good, bad], "hostile:1", None)])
    elif case == "wrong-digest":
        cfg = config_for([good, layer_tar([("other", "file", "y")])])
        data = save_tar([([good, layer_tar([("tampered", "file", "z")])], "hostile:1", cfg)])
    else:
        data = save_tar([([good, layer_tar([("f", "file", os.urandom(20000))])], "hostile:1", None)])
        data = data[: len(data) - 15000]
    before = store_snapshot(daemon)
    load_failure(c.api, data)
    assert store_snapshot(daemon) == before
    assert not os.path.exists("/tmp/berth-pwned")
    with pytest.raises(docker.errors.ImageNotFound):
        c.api.inspect_image("hostile:1")


@pytest.mark.parametrize("driver", ["overlay", "vfs"])
def test_image_of_many_layers_runs(busybox_tar: str, driver: str) -> None:
    """120 layers: the overlay mount must not hit the page-size limit on mount options."""
    d = new_daemon(driver)
    try:
        d.start()
        c = d.client()
        with tarfile.open(busybox_tar) as tf:
            import json

            manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
            base = tf.extractfile(manifest[0]["Layers"][0]).read()  # type: ignore[union-attr]
        n = 120
        layers = [base] + [layer_tar([("layers/", "dir"), (f"layers/{i:03d}", "file", str(i))]) for i in range(n)]
        layers.append(layer_tar([("layers/.wh.000", "file", "")]))  # a whiteout at the very top
        list(c.api.load_image(save_tar([(layers, "many:1", config_for(layers, cmd=["sh"]))])))
        out = c.containers.run("many:1", ["sh", "-c", "ls /layers | wc -l; cat /layers/119"], remove=True)
        assert out.split() == [str(n - 1).encode(), b"119"]
    finally:
        cleanup_daemon(d)


@pytest.mark.parametrize("mode", ["overlay", "vfs"])
def test_whiteouts_never_reach_outside(tmp_path, mode: str) -> None:  # type: ignore[no-untyped-def]
    """An opaque marker or whiteout under an absolute symlink acts inside the root, and
    `.wh..` / `.wh...` (whiteouts of . and ..) are refused."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    root, _, _ = _apply(tmp_path, [("x", "symlink", str(outside)), ("x/.wh..wh..opq", "file", ""),
                                   ("x/.wh.precious", "file", "")], mode)
    assert (outside / "precious").read_text() == "keep me"
    for bad in (".wh..", ".wh...", "d/.wh.."):
        with pytest.raises(UnsafeTarError):
            _apply(tmp_path, [("d/", "dir"), (bad, "file", "")], mode, name="bad" + str(len(bad)))
    assert (outside / "precious").exists()


def test_tar_split_never_reads_through_links(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A file written through an in-layer symlinked dir is recorded at its real place."""
    root, data, split = _apply(tmp_path, [("real/", "dir"), ("lnk", "symlink", "real"),
                                          ("lnk/f", "file", "through the link")], "vfs")
    assert (root / "real" / "f").read_text() == "through the link"
    out = io.BytesIO()
    split.seek(0)
    assemble(str(root), split, out)
    assert out.getvalue() == data
