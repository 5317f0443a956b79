"""The copy-on-write table of DESIGN.md, on both storage drivers; diff, commit, cp, export."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator

import pytest

from tests.conftest import Daemon, _daemon_fixture


@pytest.fixture(scope="module", params=["overlay", "vfs"])
def drv_daemon(request, busybox_tar: str) -> Iterator[Daemon]:  # type: ignore[no-untyped-def]
    yield from _daemon_fixture(request.param, busybox_tar)


def _image_layer_files(d: Daemon) -> dict[str, bytes]:
    """The busybox image's own /etc/passwd as stored in its layer, to prove it never changes."""
    info = d.client().api.inspect_image("busybox")["GraphDriver"]["Data"]
    layer = info.get("UpperDir") or info.get("Dir")
    with open(os.path.join(layer, "etc", "passwd"), "rb") as f:
        return {"passwd": f.read()}


def test_copy_on_write_table(drv_daemon: Daemon) -> None:
    d = drv_daemon
    c = d.client()
    before = _image_layer_files(d)
    # add → lands in the container layer; modify → copied up; delete → recorded, lower untouched
    a = c.containers.run("busybox", ["sh", "-c", "echo added > /added; echo modified >> /etc/passwd; "
                                     "rm /bin/vi; rm -r /var/spool"], detach=True)
    a.wait()
    changes = {(x["Path"], x["Kind"]) for x in c.api.diff(a.id)}
    assert {("/added", 1), ("/etc/passwd", 0), ("/bin/vi", 2), ("/var/spool", 2), ("/etc", 0)} <= changes
    assert not any(p in ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf") for p, _k in changes)
    # read → the first hit top-down: the container reads its own copy, a new one the image's
    stream, _st = c.api.get_archive(a.id, "/etc/passwd")
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tf:
        assert tf.extractfile("passwd").read().endswith(b"modified\n")  # type: ignore[union-attr]
    fresh = c.containers.run("busybox", ["tail", "-1", "/etc/passwd"], remove=True)
    assert fresh == b"nobody:x:65534:65534:nobody:/home:/bin/false\n"
    # the image layer never changed, and another container of the image sees none of a's changes
    assert _image_layer_files(d) == before
    b = c.containers.run("busybox", ["sh", "-c", "ls /added 2>&1; ls /bin/vi; ls -d /var/spool; "
                                     "grep -c modified /etc/passwd; true"], remove=True)
    assert b"No such file" in b and b"/bin/vi\n" in b and b"/var/spool\n" in b and b.endswith(b"0\n")
    # the upper layer hides the lower one: commit a's layer and run from it
    img = a.commit(repository="cow/committed", tag="1", message="cow")
    out = c.containers.run(img.id, ["sh", "-c", "cat /added; tail -1 /etc/passwd; ls /bin/vi 2>&1; "
                                    "ls /var/spool 2>&1; true"], remove=True)
    assert out.split(b"\n")[:2] == [b"added", b"modified"]
    assert out.count(b"No such file") == 2
    hist = c.api.history(img.id)
    assert hist[0]["Comment"] == "cow" and hist[0]["CreatedBy"].startswith("sh -c echo added")
    a.remove()
    c.api.remove_image(img.id)
    assert _image_layer_files(d) == before


def test_commit_layer_encodes_whiteouts(drv_daemon: Daemon) -> None:
    c = drv_daemon.client()
    a = c.containers.run("busybox", ["sh", "-c", "rm /etc/group; rm -rf /usr; mkdir /usr; echo x > /usr/new"],
                         detach=True)
    a.wait()
    img = a.commit(repository="cow/wh", tag="1", changes=['ENV COMMITTED=yes'])
    assert "COMMITTED=yes" in c.api.inspect_image(img.id)["Config"]["Env"]
    saved = b"".join(c.api.get_image(img.id))
    with tarfile.open(fileobj=io.BytesIO(saved)) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        top = tf.extractfile(manifest[0]["Layers"][-1]).read()  # type: ignore[union-attr]
    with tarfile.open(fileobj=io.BytesIO(top)) as layer:
        names = set(layer.getnames())
    assert "etc/.wh.group" in names
    assert "usr/.wh..wh..opq" in names or "usr/.wh.bin" in names
    out = c.containers.run(img.id, ["sh", "-c", "ls /etc/group 2>&1; ls /usr"], remove=True)
    assert b"No such file" in out and out.endswith(b"new\n")
    a.remove()
    c.api.remove_image(img.id)


def test_two_containers_never_share_changes(drv_daemon: Daemon) -> None:
    c = drv_daemon.client()
    x = c.containers.run("busybox", ["sh", "-c", "echo x > /mine; sleep 30"], detach=True)
    y = c.containers.run("busybox", ["sh", "-c", "sleep 0.5; ls /mine 2>&1; sleep 30"], detach=True)
    try:
        import time

        time.sleep(1.0)
        assert b"No such file" in y.logs()
        assert x.exec_run(["cat", "/mine"]).output == b"x\n"
    finally:
        x.remove(force=True)
        y.remove(force=True)


def test_cp_both_ways_and_export(drv_daemon: Daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = drv_daemon
    d.cli("create", "--name", "cpbox", "busybox", "cat", "/in/hello")
    try:
        src = tmp_path / "hello"
        src.write_text("from host\n")
        d.cli("run", "--rm", "busybox", "true")
        d.cli("cp", str(src), "cpbox:/tmp/")
        r = d.cli("start", "-a", "cpbox", check=False)
        assert r.returncode != 0  # /in does not exist yet
        (tmp_path / "in").mkdir()
        (tmp_path / "in" / "hello").write_text("dir copy\n")
        d.cli("cp", str(tmp_path / "in"), "cpbox:/")
        assert d.cli("start", "-a", "cpbox").stdout == b"dir copy\n"
        out = tmp_path / "out"
        out.mkdir()
        d.cli("cp", "cpbox:/tmp/hello", str(out))
        assert (out / "hello").read_text() == "from host\n"
        d.cli("cp", "cpbox:/etc", str(out / "etc"))
        assert (out / "etc" / "passwd").read_bytes().startswith(b"root:x:0:0")
        exported = d.cli("export", "cpbox").stdout
        with tarfile.open(fileobj=io.BytesIO(exported)) as tf:
            names = set(tf.getnames())
            assert {"bin/busybox", "in/hello", "tmp/hello", "etc/passwd"} <= names
            assert tf.extractfile("in/hello").read() == b"dir copy\n"  # type: ignore[union-attr]
        st = d.client().api.get_archive("cpbox", "/in/hello")[1]
        assert st["name"] == "hello" and st["size"] == len("dir copy\n")
    finally:
        d.cli("rm", "-f", "cpbox")


def test_cp_cannot_escape_through_container_symlinks(drv_daemon: Daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = drv_daemon
    d.cli("run", "--name", "evil", "busybox", "sh", "-c",
          "ln -s / /rootlink; ln -s ../../../../../../ /uplink; mkdir -p /secret; echo container > /secret/passwd")
    try:
        out = tmp_path / "o"
        out.mkdir()
        d.cli("cp", "evil:/uplink/etc/passwd", str(out / "p1"))
        d.cli("cp", "evil:/rootlink/etc/passwd", str(out / "p2"))
        for p in ("p1", "p2"):
            assert (out / p).read_bytes().startswith(b"root:x:0:0:root:/root:/bin/sh\ndaemon")  # the image's
        marker = tmp_path / "marker"
        marker.write_text("copied in\n")
        host_target = f"/var/tmp/berth-cp-escape-{os.getpid()}"
        d.cli("cp", str(marker), f"evil:/uplink{host_target}", check=False)
        assert not os.path.exists(host_target)  # it landed inside the container, if anywhere
        r = d.cli("cp", "evil:/no/such/file", str(out / "x"), check=False)
        assert r.returncode != 0 and b"Could not find the file /no/such/file in container evil" in r.stderr
    finally:
        d.cli("rm", "-f", "evil")
