"""Hostile containers racing the daemon (CVE-2018-15664, CVE-2017-1002101 classes).

A small C program, built here, swaps a directory and a symlink in a loop with
``renameat2(RENAME_EXCHANGE)`` inside a container, so that at any instant one of the two names
is a real directory and the other a link pointing at a host directory. Meanwhile the test drives
``docker cp`` (GET and PUT /archive) and volume subpath mounts at those names. Whatever the
interleaving, nothing may be written to, or read from, the host directory the links name.
Run on both storage drivers.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator

import docker
import pytest

from tests.conftest import Daemon, _daemon_fixture

SWAP_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE 2
#endif
int main(int argc, char **argv) {
    if (argc != 3) return 2;
    for (;;) syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], RENAME_EXCHANGE);
}
"""
ROUNDS = 150


@pytest.fixture(scope="module", params=["overlay", "vfs"])
def daemon(request: pytest.FixtureRequest, busybox_tar: str) -> Iterator[Daemon]:
    yield from _daemon_fixture(request.param, busybox_tar)


@pytest.fixture(scope="module")
def swapper() -> Iterator[str]:
    """A directory holding the static ``swap`` binary, to bind into containers read-only."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is needed to build the race helper (scripts/setup.sh installs it)")
    d = tempfile.mkdtemp(prefix="berth-race-bin-", dir="/var/tmp")
    try:
        with open(f"{d}/swap.c", "w") as f:
            f.write(SWAP_C)
        subprocess.run([gcc, "-O2", "-static", "-o", f"{d}/swap", f"{d}/swap.c"], check=True, capture_output=True)
        os.chmod(d, 0o755)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def host_dir() -> Iterator[str]:
    """The host directory the container's links point at, with a secret the container must not get."""
    d = tempfile.mkdtemp(prefix="berth-race-host-", dir="/var/tmp")
    with open(f"{d}/secret", "w") as f:
        f.write("HOST-SECRET")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _racer(client: docker.DockerClient, swapper: str, setup: str, a: str, b: str,
           volumes: dict[str, dict[str, str]] | None = None) -> docker.models.containers.Container:
    vols = {swapper: {"bind": "/race", "mode": "ro"}, **(volumes or {})}
    return client.containers.run("busybox", ["sh", "-c", f"{setup} && exec /race/swap {a} {b}"], detach=True,
                                 volumes=vols)


def _tar(names: list[str], data: bytes = b"x") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name in names:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_put_archive_race_never_writes_on_host(daemon: Daemon, swapper: str, host_dir: str) -> None:
    client = daemon.client()
    # way 1: a directory inside the target swaps with a link to the host; way 2: the target itself does
    inner = _racer(client, swapper, f"mkdir -p /w/d/a && ln -s {host_dir} /w/d/lnk", "/w/d/a", "/w/d/lnk")
    outer = _racer(client, swapper, f"mkdir -p /w/t && ln -s {host_dir} /w/tl", "/w/t", "/w/tl")
    server_errors = []
    try:
        for i in range(ROUNDS):
            for ctr, path, names in ((inner, "/w/d", [f"a/in-{i}", f"lnk/ln-{i}"]), (outer, "/w/t", [f"out-{i}"])):
                try:
                    ctr.put_archive(path, _tar(names))
                except docker.errors.APIError as e:
                    if e.status_code >= 500:
                        server_errors.append(str(e))
        assert sorted(os.listdir(host_dir)) == ["secret"], "a write reached the host"
        assert not server_errors, server_errors[:3]  # a path that vanished mid-copy is a clean 4xx
        with open(f"{host_dir}/secret") as f:
            assert f.read() == "HOST-SECRET"
        # and the copies did land inside the container, through whichever name was a directory
        # (read once the swapper is dead: a listing that races it can miss both names)
        inner.kill()
        inner.wait(timeout=30)
        stream, _stat = inner.get_archive("/w/d")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tf:
            assert any("/in-" in n for n in tf.getnames())
    finally:
        for ctr in (inner, outer):
            ctr.remove(force=True)


def test_get_archive_race_never_reads_host(daemon: Daemon, swapper: str, host_dir: str) -> None:
    client = daemon.client()
    ctr = _racer(client, swapper, f"mkdir -p /w/a && echo container > /w/a/secret && ln -s {host_dir} /w/l",
                 "/w/a", "/w/l")
    seen = set()
    server_errors = []
    try:
        for _ in range(ROUNDS):
            for path in ("/w/a/secret", "/w/a", "/w/l/secret"):
                try:
                    stream, _stat = ctr.get_archive(path)
                    data = b"".join(stream)
                except docker.errors.APIError as e:
                    if e.status_code >= 500:
                        server_errors.append(str(e))
                    continue
                assert b"HOST-SECRET" not in data
                seen.add(path)
        assert seen, "no read ever succeeded: the race test tested nothing"
        assert not server_errors, server_errors[:3]
    finally:
        ctr.remove(force=True)


def test_volume_subpath_race_never_mounts_host(daemon: Daemon, swapper: str, host_dir: str) -> None:
    client = daemon.client()
    vol = client.volumes.create()
    # way 1: the subpath itself swaps with an absolute link; way 2: a parent of it swaps with a relative one
    ups = "../" * 12
    ctr = _racer(client, swapper,
                 f"mkdir -p /v/sub/in /v/p/in && echo vol > /v/sub/in/secret && echo vol > /v/p/in/secret"
                 f" && ln -s {host_dir} /v/evil && ln -s {ups}{host_dir.lstrip('/')} /v/pl"
                 " && (/race/swap /v/p /v/pl &)", "/v/sub", "/v/evil",
                 volumes={vol.name: {"bind": "/v", "mode": "rw"}})
    mounted = 0
    try:
        for i in range(40):
            sub = "sub" if i % 2 == 0 else "p/in"
            r = daemon.cli("run", "--rm", "--mount", f"type=volume,src={vol.name},dst=/m,volume-subpath={sub}",
                           "busybox", "sh", "-c", "cat /m/secret /m/in/secret 2>/dev/null; ls /m", check=False)
            assert b"HOST-SECRET" not in r.stdout, r.stdout
            if r.returncode == 0:
                mounted += 1
            else:
                assert b"subpath" in r.stderr or b"not a directory" in r.stderr, r.stderr
        assert mounted, "no run ever mounted the subpath: the race test tested nothing"
        assert sorted(os.listdir(host_dir)) == ["secret"]
    finally:
        ctr.remove(force=True)
        vol.remove(force=True)


def test_copy_of_a_running_containers_root_skips_kernel_filesystems(daemon: Daemon) -> None:
    """`docker cp c:/ -` of a running container: its /proc and /sys are mount points of kernel
    filesystems (whose files claim terabytes or fail to read), archived as empty directories."""
    client = daemon.client()
    ctr = client.containers.run("busybox", ["sleep", "60"], detach=True)
    try:
        stream, _stat = ctr.get_archive("/")
        data = b"".join(stream)
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            names = tf.getnames()
        assert "etc/passwd" in names or "/etc/passwd" in names or any(n.endswith("etc/passwd") for n in names)
        assert any(n.rstrip("/").endswith("proc") for n in names)
        assert not any("/proc/" in "/" + n and "self" in n for n in names)
        assert not any(n.startswith(("sys/", "./sys/")) and n.count("/") > 1 for n in names)
        r = daemon.cli("cp", f"{ctr.id}:/proc/cpuinfo", "-", check=False)  # asked for by name: a clear answer
        assert r.returncode in (0, 1) and b"Traceback" not in r.stderr
    finally:
        ctr.remove(force=True)
