"""What berthd exposes to the rest of the host: its state (data root, exec root, database), its API
socket and TCP listeners, and what containers can do to /sys/fs/cgroup."""

from __future__ import annotations

import glob
import os
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator

import docker
import pytest

from tests.conftest import BERTHD, DOCKER_CLI, Daemon, cleanup_daemon, new_daemon

NOBODY = 65534
# Docker's modes for the same trees (root:root everywhere)
GATES = {"": 0o710, "overlay": 0o710, "overlay/l": 0o700, "containers": 0o710, "content": 0o700, "layers": 0o700,
         "volumes": 0o701, "tmp": 0o700}


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    """Run a command as an unprivileged host user (nobody, no supplementary groups)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent", "DOCKER_CONFIG": "/nonexistent"}
    return subprocess.run(list(argv), user=NOBODY, group=NOBODY, extra_groups=[], env=env, cwd="/",
                          capture_output=True, timeout=60)


def assert_denied(*argv: str) -> None:
    r = as_nobody(*argv)
    assert r.returncode != 0 and b"ermission denied" in r.stderr, (argv, r.returncode, r.stderr)


def mode_of(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def reachable(daemon: Daemon) -> Iterator[Daemon]:
    """The test root made traversable (mkdtemp makes it 0700), so only berthd's own modes stand between
    another user and the data root, the exec root and the socket."""
    os.chmod(daemon.root, 0o711)
    try:
        yield daemon
    finally:
        os.chmod(daemon.root, 0o700)


# -- state on disk -------------------------------------------------------------------------------------

def test_another_host_user_cannot_reach_berths_state(reachable: Daemon) -> None:
    d = reachable
    c = d.client()
    ct = c.containers.run("busybox", ["sleep", "60"], detach=True, environment={"SECRET": "hunter2"})
    try:
        layer = next(p for p in glob.glob(os.path.join(d.data_root, "overlay", "*", "diff", "bin", "busybox")))
        bundle_config = os.path.join(d.exec_root, "c", ct.id, "config.json")
        assert b"hunter2" in open(bundle_config, "rb").read()  # what the exec root protects
        assert_denied("ls", d.data_root)
        assert_denied("ls", os.path.dirname(os.path.dirname(layer)))
        assert_denied("stat", layer)  # an image's binaries, setuid ones included, are out of reach
        assert_denied("cat", os.path.join(d.data_root, "berth.db"))
        assert_denied("ls", d.exec_root)
        assert_denied("cat", bundle_config)
        assert_denied("cat", os.path.join(d.data_root, "containers", ct.id, "container.log"))
        for rel, mode in GATES.items():
            assert mode_of(os.path.join(d.data_root, rel)) == (mode, 0, 0), rel
        assert mode_of(d.exec_root) == (0o700, 0, 0)
        for name in ("berth.db", "berth.db-wal", "berth.db-shm"):
            assert mode_of(os.path.join(d.data_root, name)) == (0o600, 0, 0), name
        # conmon writes 0600, berth-monitor 0640 as Docker's json-file does (group root): never other users
        log_mode, log_uid, log_gid = mode_of(os.path.join(d.data_root, "containers", ct.id, "container.log"))
        assert log_mode in (0o600, 0o640) and (log_uid, log_gid) == (0, 0)
    finally:
        ct.remove(force=True)


def test_containers_with_a_non_root_user_still_work(daemon: Daemon) -> None:
    """crun mounts as root, so the gates do not get in a container's way: a non-root USER reads image
    files, /etc/hosts and a volume, works in a WORKDIR berth creates, reaches a nested mount point, and
    a volume's _data keeps the image content's mode (0755 when empty), as with Docker."""
    d = daemon
    c = d.client()
    c.containers.run("busybox", ["sh", "-c", "mkdir -p /srv/d && echo from-image > /srv/d/f && "
                                 "chown -R 1000:1000 /srv/d && chmod 0750 /srv/d"], name="hs-prep")
    c.containers.get("hs-prep").commit("hs-img")
    try:
        c.containers.run("busybox", ["sh", "-c", "echo hi > /v/f && mkdir /v/u && chown 1000 /v/u"],
                         volumes={"hs-vol": {"bind": "/v"}}, remove=True)
        out = c.containers.run(
            "hs-img", ["sh", "-c", "id -u; pwd; cat /deep/nested/vol/f; echo w > /deep/nested/vol/u/g; "
                       "grep -c localhost /etc/hosts; cat /srv/d/f; echo w > /srv/d/g; /bin/busybox true && echo ok"],
            user="1000", working_dir="/work/sub", remove=True,
            volumes={"hs-vol": {"bind": "/deep/nested/vol"}, "hs-vol2": {"bind": "/srv/d"}})
        assert out.decode().split() == ["1000", "/work/sub", "hi", "2", "from-image", "ok"]
        vol = c.api.inspect_volume("hs-vol")["Mountpoint"]
        assert mode_of(vol)[0] == 0o755 and mode_of(os.path.dirname(vol))[0] == 0o755
        assert mode_of(c.api.inspect_volume("hs-vol2")["Mountpoint"])[:2] == (0o750, 1000)
    finally:
        c.api.remove_container("hs-prep", force=True)
        c.api.remove_image("hs-img")
        for v in ("hs-vol", "hs-vol2"):
            c.api.remove_volume(v)


def test_a_loose_existing_root_is_tightened_at_start(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    c = d.client()
    c.containers.run("busybox", ["true"], name="old")
    d.stop()
    # a root as an older berth (or a careless admin) left it: readable by all, owned by someone else
    os.chown(d.data_root, NOBODY, NOBODY)
    for rel in GATES:
        os.chmod(os.path.join(d.data_root, rel), 0o755)
    os.chmod(os.path.join(d.data_root, "containers"), 0o777)
    os.chmod(d.exec_root, 0o755)
    db = os.path.join(d.data_root, "berth.db")
    os.chmod(db, 0o644)
    for extra in ("-wal", "-shm"):
        if not os.path.exists(db + extra):
            open(db + extra, "wb").close()  # left over as SQLite may leave them
        os.chmod(db + extra, 0o666)
    os.chmod(d.root, 0o711)
    assert as_nobody("ls", d.data_root).returncode == 0  # the hole this closes
    d.start()
    for rel, mode in GATES.items():
        assert mode_of(os.path.join(d.data_root, rel)) == (mode, 0, 0), rel
    assert mode_of(d.exec_root) == (0o700, 0, 0)
    for name in ("berth.db", "berth.db-wal", "berth.db-shm"):
        assert mode_of(os.path.join(d.data_root, name))[0] == 0o600, name
    assert_denied("ls", d.data_root)
    assert "tightened" in d.log()
    c = d.client()
    assert c.api.inspect_container("old")["State"]["Status"] == "exited"
    assert c.containers.run("busybox", ["echo", "fine"], remove=True, user="1000") == b"fine\n"


def test_state_is_not_world_writable_under_a_permissive_umask(busybox_tar: str) -> None:
    """berthd fixes its umask at 022 first thing: started from a shell with umask 000, nothing of its own
    comes out writable by others (Docker does the same)."""
    d = new_daemon()
    old = os.umask(0)
    try:
        d.start()
    finally:
        os.umask(old)
    try:
        c = d.client()
        with open(busybox_tar, "rb") as f:
            list(c.api.load_image(f.read()))
        c.containers.run("busybox", ["true"], name="umask0")
        assert mode_of(d.sock)[0] == 0o660
        loose = []
        for top in (d.data_root, d.exec_root):
            for dirpath, dirnames, filenames in os.walk(top):
                rel = os.path.relpath(dirpath, d.data_root)
                if rel.startswith("overlay/") and "/" in rel[len("overlay/"):]:
                    dirnames[:] = []  # layer content carries the image's own modes
                    continue
                for n in dirnames + filenames:
                    st = os.lstat(os.path.join(dirpath, n))
                    if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o002:
                        loose.append(os.path.join(dirpath, n))
        assert loose == []
    finally:
        cleanup_daemon(d)


# -- the API socket ------------------------------------------------------------------------------------

def test_api_socket_is_0660_root_from_the_start() -> None:
    """Watch the socket path while berthd starts: every mode ever seen there is 0660, group root. It is
    bound in a private 0700 directory, given its mode there and renamed into place (the server's bound
    address, seen from a client, shows that), so there is no moment when a looser socket exists."""
    d = new_daemon()
    open(d.sock, "w").close()  # a stale file where the socket goes is replaced
    seen: set[tuple[int, int, int]] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                st = os.lstat(d.sock)
            except FileNotFoundError:
                continue
            if stat.S_ISSOCK(st.st_mode):
                seen.add((stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid))

    t = threading.Thread(target=watch)
    old = os.umask(0)  # the daemon must not depend on its parent's umask
    try:
        t.start()
        d.start()
    finally:
        os.umask(old)
        time.sleep(0.05)
        stop.set()
        t.join()
    try:
        assert seen == {(0o660, 0, 0)}
        assert mode_of(d.sock) == (0o660, 0, 0)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(d.sock)
            assert s.getpeername().startswith("/proc/self/fd/")
        assert [n for n in os.listdir(d.root) if n.startswith(".berth-sock-")] == []
        os.chmod(d.root, 0o711)
        if DOCKER_CLI:
            assert_denied(DOCKER_CLI, "-H", d.host, "version")
    finally:
        cleanup_daemon(d)


# -- TCP -----------------------------------------------------------------------------------------------

def test_unauthenticated_tcp_on_all_interfaces_is_refused(tmp_path: object) -> None:
    port = free_port()
    root = str(tmp_path)
    r = subprocess.run([*BERTHD, "-H", f"tcp://0.0.0.0:{port}", "--data-root", os.path.join(root, "data"),
                        "--exec-root", os.path.join(root, "run")], capture_output=True, timeout=30)
    assert r.returncode != 0
    err = r.stderr.decode()
    assert f"refusing to serve the API on tcp://0.0.0.0:{port} without TLS client verification" in err
    assert "--tls=false" in err and "--tlsverify" in err
    assert not os.path.exists(os.path.join(root, "data"))  # refused before anything was created
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))


def test_tcp_on_all_interfaces_with_explicit_tls_false_starts_and_warns() -> None:
    port = free_port()
    d = new_daemon(extra=["-H", f"tcp://0.0.0.0:{port}", "--tls=false"])
    try:
        d.start()
        c = docker.DockerClient(base_url=f"tcp://127.0.0.1:{port}", version="1.45", timeout=30)
        assert c.ping()
        warnings = c.info()["Warnings"] or []
        assert any(f"tcp://0.0.0.0:{port}" in w and "root" in w for w in warnings)
        assert "INSECURE" in d.log() and f"tcp://0.0.0.0:{port}" in d.log()
    finally:
        cleanup_daemon(d)


def test_loopback_tcp_without_tls_is_allowed() -> None:
    port = free_port()
    d = new_daemon(extra=["-H", f"tcp://127.0.0.1:{port}"])
    try:
        d.start()
        assert docker.DockerClient(base_url=f"tcp://127.0.0.1:{port}", version="1.45", timeout=30).ping()
        if DOCKER_CLI:
            r = subprocess.run([DOCKER_CLI, "-H", f"tcp://127.0.0.1:{port}", "version", "--format",
                                "{{.Server.APIVersion}}"], capture_output=True, timeout=30)
            assert r.returncode == 0 and r.stdout.strip() == b"1.45"
    finally:
        cleanup_daemon(d)


# -- /sys/fs/cgroup ------------------------------------------------------------------------------------

CGROUP_WRITE = "mkdir /sys/fs/cgroup/x || touch /sys/fs/cgroup/x"


@pytest.mark.parametrize("extra", [[], ["--cap-add", "SYS_ADMIN"]], ids=["default", "cap-add-sys-admin"])
def test_sys_fs_cgroup_is_read_only(daemon: Daemon, extra: list[str]) -> None:
    r = daemon.cli("run", "--rm", *extra, "busybox", "sh", "-c", CGROUP_WRITE, check=False)
    assert r.returncode != 0
    assert b"Read-only file system" in r.stderr
    # still readable: the hierarchies are there, only writes are refused
    r = daemon.cli("run", "--rm", *extra, "busybox", "sh", "-c", "ls /sys/fs/cgroup/ | grep -c memory")
    assert r.stdout.strip() == b"1"


def test_sys_fs_cgroup_is_writable_when_privileged(daemon: Daemon) -> None:
    r = daemon.cli("run", "--rm", "--privileged", "busybox", "sh", "-c", CGROUP_WRITE + " && echo wrote")
    assert r.stdout.strip() == b"wrote"
