"""Hostile archives that try to make berthd loop, expand or stall, and the extraction cases a
descriptor-based, indexed extractor could get wrong (each checked byte for byte on save)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time

import pytest

from berth.layers.tarapply import UnsafeTarError, apply_tar
from berth.layers.tarsplit import assemble
from tests.conftest import Daemon, cleanup_daemon, new_daemon, store_snapshot
from tests.imagetools import layer_tar, load_failure, save_tar


def _raw_tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = kind, target
    return ti, None


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    return ti, data


def _sparse_layer() -> bytes:
    """A GNU sparse entry (old format): 10 bytes of data claiming a 256 MiB file."""
    ti = tarfile.TarInfo("sparse")
    ti.size = 512
    buf = bytearray(ti.tobuf(format=tarfile.GNU_FORMAT))
    buf[156:157] = tarfile.GNUTYPE_SPARSE
    real = 256 << 20
    # sparse map in the old GNU header: offset 386, 4 entries of (offset, numbytes), then
    # isextended (482), realsize (483..495)
    buf[386:398] = tarfile.itn(real - 512, 12, tarfile.GNU_FORMAT)
    buf[398:410] = tarfile.itn(512, 12, tarfile.GNU_FORMAT)
    buf[483:495] = tarfile.itn(real, 12, tarfile.GNU_FORMAT)
    buf[148:156] = b"        "
    chksum = sum(buf[:512])
    buf[148:156] = b"%06o\0 " % chksum
    return bytes(buf) + b"x" * 512 + b"\0" * 1024


LOOPS = {
    # manifest.json is a link that leads back to itself through a second link
    "manifest-symlink-loop": lambda good: _raw_tar([_link("manifest.json", "m2", tarfile.SYMTYPE),
                                                    _link("m2", "manifest.json", tarfile.SYMTYPE)]),
    "manifest-hardlink-loop": lambda good: _raw_tar([_link("manifest.json", "m2", tarfile.LNKTYPE),
                                                     _link("m2", "manifest.json", tarfile.LNKTYPE)]),
    # a layer whose entries form a symlink loop, then write through it
    "layer-symlink-loop": lambda good: save_tar([([good, layer_tar([("a", "symlink", "b"), ("b", "symlink", "a"),
                                                                    ("a/x", "file", "x")])], "loop:1", None)]),
    # a layer whose directory links to itself, deep enough to loop a naive walker
    "layer-self-link": lambda good: save_tar([([good, layer_tar([("d", "symlink", "d/d/d"),
                                                                 ("d/d/d/d/x", "file", "x")])], "loop:1", None)]),
    "sparse-expansion": lambda good: save_tar([([good, _sparse_layer()], "loop:1", None)]),
}


@pytest.mark.parametrize("case", sorted(LOOPS))
def test_loops_and_expansions_are_400_and_change_nothing(daemon: Daemon, case: str) -> None:
    c = daemon.client()
    good = layer_tar([("ok/", "dir"), ("ok/file", "file", "fine")])
    data = LOOPS[case](good)
    before = store_snapshot(daemon)
    t0 = time.monotonic()
    load_failure(c.api, data)  # reported in the stream, as dockerd does
    assert time.monotonic() - t0 < 10
    assert store_snapshot(daemon) == before
    assert c.ping()


def test_self_referencing_oci_index_is_400(daemon: Daemon) -> None:
    """A chain of OCI indexes eight deep (a blob cannot name its own digest, so this is how a
    digest 'loop' looks): refused, never recursed without bound."""
    chain = [json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                         "manifests": []}).encode()]
    for _ in range(8):
        prev = chain[-1]
        chain.append(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                 "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
                                                "digest": "sha256:" + hashlib.sha256(prev).hexdigest(),
                                                "size": len(prev)}]}).encode())
    inner = chain[-1]
    members = [_file("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), _file("index.json", inner)]
    members += [_file(f"blobs/sha256/{hashlib.sha256(b).hexdigest()}", b) for b in chain]
    before = store_snapshot(daemon)
    load_failure(daemon.client().api, _raw_tar(members))
    assert store_snapshot(daemon) == before


def test_parallel_hostile_loads_do_not_stall_the_daemon(busybox_tar: str) -> None:
    """Eight hostile loads at once (more than the pool's threads) while `docker ps` must answer,
    then SIGTERM must stop berthd promptly."""
    d = new_daemon()
    try:
        d.start()
        good = layer_tar([("ok/", "dir"), ("ok/file", "file", "fine")])
        bad = LOOPS["layer-self-link"](good)
        errors: list[str] = []

        def load() -> None:
            errors.append(load_failure(d.client().api, bad))

        threads = [threading.Thread(target=load) for _ in range(8)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        d.client().api.containers(all=True)
        assert time.monotonic() - t0 < 2
        for t in threads:
            t.join(60)
        assert len(errors) == 8
        assert d.proc is not None
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(10) == 0
    finally:
        cleanup_daemon(d)


# -- what an indexed, descriptor-based extractor could get wrong ----------------------------------

CASES = {
    "dir-replaced-by-file-and-back": [("d/", "dir"), ("d/f", "file", "one"), ("d/sub/", "dir"),
                                      ("d/sub/g", "file", "g"), ("d", "file", "now a file"), ("d/", "dir"),
                                      ("d/f", "file", "two")],
    "symlinked-dir-replaced-by-real": [("real/", "dir"), ("l", "symlink", "real"), ("l/f", "file", "via link"),
                                       ("l", "file", "x"), ("l/", "dir"), ("l/f", "file", "real dir")],
    "hardlink-target-replaced": [("a", "file", "original"), ("h", "hardlink", "a"), ("a", "file", "replaced"),
                                 ("h2", "hardlink", "a")],
    "whiteout-of-dir-with-link-targets": [("d/", "dir"), ("d/t", "file", "target"), ("e/", "dir"),
                                          ("e/h", "hardlink", "d/t"), ("d/u", "file", "u"), (".wh.d", "file", ""),
                                          ("d/", "dir"), ("d/t", "file", "again")],
    "file-rewritten-many-times": [("x/", "dir")] + [("x/f", "file", f"v{i}") for i in range(50)],
}


@pytest.mark.parametrize("mode", ["overlay", "vfs"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_extraction_cases_reassemble_byte_for_byte(tmp_path, mode: str, case: str) -> None:  # type: ignore[no-untyped-def]
    data = layer_tar(CASES[case])
    tar = tmp_path / "l.tar"
    tar.write_bytes(data)
    root = tmp_path / "root"
    root.mkdir()
    split = io.BytesIO()
    apply_tar(str(tar), str(root), mode, split)
    out = io.BytesIO()
    split.seek(0)
    assemble(str(root), split, out)
    assert out.getvalue() == data
    if case == "dir-replaced-by-file-and-back":
        assert sorted(os.listdir(root / "d")) == ["f"] and (root / "d" / "f").read_text() == "two"
    if case == "symlinked-dir-replaced-by-real":
        assert (root / "l").is_dir() and not (root / "l").is_symlink() and (root / "l/f").read_text() == "real dir"
        assert (root / "real/f").read_text() == "via link"
    if case == "hardlink-target-replaced":
        assert (root / "h").read_text() == "original" and (root / "h2").read_text() == "replaced"
    if case == "whiteout-of-dir-with-link-targets":
        assert (root / "e/h").read_text() == "target" and (root / "d/t").read_text() == "again"


def test_truncated_sparse_and_loops_refused_offline(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tar = tmp_path / "s.tar"
    tar.write_bytes(_sparse_layer())
    root = tmp_path / "r"
    root.mkdir()
    with pytest.raises(UnsafeTarError, match="sparse"):
        apply_tar(str(tar), str(root), "overlay")
    assert os.listdir(root) == []


def _many_files_tar(path: str, n: int) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for d in range(n // 10):
            ti = tarfile.TarInfo(f"pkg/m{d // 100}/d{d}")
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(ti)
            for i in range(10):
                fi = tarfile.TarInfo(f"pkg/m{d // 100}/d{d}/f{i}.py")
                fi.size = 20
                tf.addfile(fi, io.BytesIO(b"x" * 20))


@pytest.mark.parametrize("mode", ["overlay", "vfs"])
def test_extraction_scales_linearly(tmp_path, mode: str) -> None:  # type: ignore[no-untyped-def]
    """50,000 entries may take at most 3x what 5,000 take, scaled linearly (it was quadratic)."""
    code = (
        "import io, sys, time\n"
        "from berth.layers.tarapply import apply_tar\n"
        "t = time.perf_counter()\n"
        "apply_tar(sys.argv[1], sys.argv[2], sys.argv[3], io.BytesIO())\n"
        "print(time.perf_counter() - t)\n"
    )
    times = {}
    for n in (5_000, 50_000):
        tar = str(tmp_path / f"{n}.tar")
        _many_files_tar(tar, n)
        root = tmp_path / f"r{n}"
        root.mkdir()
        out = subprocess.run([sys.executable, "-c", code, tar, str(root), mode], check=True, capture_output=True,
                             text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
        times[n] = float(out.stdout)
        subprocess.run(["rm", "-rf", str(root)], check=True)
    assert times[50_000] <= 3 * 10 * times[5_000], times
