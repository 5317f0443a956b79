"""The container monitor, run against both implementations (berth-monitor and conmon): survival of a
SIGKILLed berthd, log rotation (berth-monitor), TTY resize, bad log options, a monitor that cannot
start, and berth-monitor's memory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time

import docker
import pytest

from berth.runtime.berthmon import binary_path
from tests.conftest import Daemon, mounts_under
from tests.test_daemon import test_containers_survive_kill_9_of_berthd  # noqa: F401 - run here per monitor


@pytest.fixture(scope="module")
def monitor(each_monitor: str) -> str:
    return each_monitor


def _wait_exit(c: docker.DockerClient, name: str, timeout: float = 120) -> dict:  # type: ignore[type-arg]
    return c.api.wait(name, timeout=timeout)  # type: ignore[no-any-return]


def _numbers(out: bytes) -> list[int]:
    return [int(line.split(b" ", 1)[0]) for line in out.splitlines() if line]


def test_rotation_keeps_max_file_files_and_logs_reads_them_in_order(daemon: Daemon, monitor: str) -> None:
    if monitor != "berth":
        pytest.skip("conmon keeps a single log file (it starts it afresh at max-size)")
    c = daemon.client()
    # 50,000 numbered lines of 1,000 bytes: 50 MB through a 1 MB x 3 log
    script = ('awk \'BEGIN{s=sprintf("%990s",""); gsub(/ /,"x",s); '
              'for(i=0;i<50000;i++) printf "%08d %s\\n", i, s}\'')
    daemon.cli("run", "-d", "--name", "rotor", "--log-opt", "max-size=1m", "--log-opt", "max-file=3",
               "busybox", "sh", "-c", script)
    assert _wait_exit(c, "rotor")["StatusCode"] == 0
    log = c.api.inspect_container("rotor")["LogPath"]
    files = sorted(f for f in os.listdir(os.path.dirname(log)) if f.startswith("container.log"))
    assert files == ["container.log", "container.log.1", "container.log.2"]
    on_disk = 0
    for f in files:
        path = os.path.join(os.path.dirname(log), f)
        assert os.path.getsize(path) <= 1_000_000 + 1_100  # past max-size by at most the rest of a line
        with open(path, "rb") as fh:
            on_disk += sum(1 for line in fh if line.split(b" ", 3)[2:3] == [b"F"])
    nums = _numbers(daemon.cli("logs", "rotor").stdout)
    # every line still on disk, in order, up to the last one written
    assert len(nums) == on_disk > 2000
    assert nums == list(range(nums[0], nums[0] + len(nums))) and nums[-1] == 49999
    assert _numbers(daemon.cli("logs", "--tail", "3", "rotor").stdout) == [49997, 49998, 49999]
    daemon.cli("rm", "rotor")


def test_logs_follow_crosses_rotations(daemon: Daemon, monitor: str) -> None:
    if monitor != "berth":
        pytest.skip("conmon keeps a single log file")
    script = "i=0; while [ $i -lt 2000 ]; do echo $i padpadpadpadpadpadpadpadpadpadpadpad; i=$((i+1)); " \
             "[ $((i % 100)) = 0 ] && sleep 0.05; done"
    daemon.cli("run", "-d", "--name", "followed", "--log-opt", "max-size=20k", "--log-opt", "max-file=2",
               "busybox", "sh", "-c", "sleep 0.5; " + script)
    out = daemon.cli("logs", "-f", "followed", timeout=60).stdout
    assert _numbers(out) == list(range(2000))  # the follower read each file before it was rotated away
    daemon.cli("rm", "followed")


@pytest.mark.parametrize(("opt", "word"), [("max-size=12q", "max-size"), ("max-size=0", "max-size"),
                                           ("max-file=x", "max-file"), ("max-file=0", "max-file")])
def test_bad_log_options_are_400_naming_them(daemon: Daemon, opt: str, word: str) -> None:
    before = daemon.cli("ps", "-aq").stdout
    extra = ["--log-opt", "max-size=1m"] if word == "max-file" else []
    r = daemon.cli("run", "--rm", *extra, "--log-opt", opt, "busybox", "true", check=False)
    assert r.returncode == 125 and word in r.stderr.decode()
    with pytest.raises(docker.errors.APIError) as e:
        daemon.client().api.create_container(
            "busybox", ["true"], host_config={"LogConfig": {"Type": "json-file", "Config": dict(
                [opt.split("=", 1)] + ([("max-size", "1m")] if word == "max-file" else []))}})
    assert e.value.status_code == 400 and word in str(e.value.explanation)
    assert daemon.cli("ps", "-aq").stdout == before


def test_monitor_that_cannot_start_leaves_nothing_behind(daemon: Daemon) -> None:
    c = daemon.client()
    cid = daemon.cli("create", "--name", "nolog", "busybox", "echo", "hi").stdout.decode().strip()
    # (inspect shows no LogPath before the first start, as dockerd: berthd's layout is known here)
    log = os.path.join(daemon.data_root, "containers", cid, "container.log")
    os.mkdir(log)  # the monitor cannot open its log file
    try:
        r = daemon.cli("start", "nolog", check=False)
        assert r.returncode != 0 and r.stderr
        st = c.api.inspect_container(cid)["State"]
        assert st["Status"] == "created" and not st["Running"] and st["Pid"] == 0
        assert not [m for m in mounts_under(daemon.root) if cid in m]  # the rootfs is unmounted again
        time.sleep(0.2)
        assert not _processes_naming(cid)  # no monitor, no runtime left
    finally:
        os.rmdir(log)
    daemon.cli("start", "nolog")
    assert _wait_exit(c, "nolog")["StatusCode"] == 0
    assert daemon.cli("logs", "nolog").stdout == b"hi\n"
    daemon.cli("rm", "nolog")


def test_tty_output_stdin_and_resize(daemon: Daemon) -> None:
    c = daemon.client()
    ct = c.api.create_container("busybox", ["sh", "-c", "read x; echo got $x; stty size"], tty=True,
                                stdin_open=True, name="tty")
    sock = c.api.attach_socket(ct["Id"], params={"stdin": 1, "stdout": 1, "stream": 1})
    c.api.start(ct["Id"])
    c.api.resize(ct["Id"], height=33, width=111)
    time.sleep(0.2)
    sock._sock.sendall(b"word\n")
    out = b""
    deadline = time.monotonic() + 20
    while b"111" not in out and time.monotonic() < deadline:
        chunk = sock._sock.recv(4096)
        if not chunk:
            break
        out += chunk
    sock.close()
    assert b"got word" in out and b"33 111" in out
    assert _wait_exit(c, "tty")["StatusCode"] == 0
    c.api.remove_container("tty")


def test_stdin_once_closes_stdin_but_output_flows(daemon: Daemon) -> None:
    r = daemon.cli("run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo done", input=b"a\nb\n")
    assert r.stdout == b"a\nb\ndone\n"


def test_berth_monitor_rss_is_below_conmons(daemon: Daemon, monitor: str) -> None:
    c = daemon.client()
    ct = c.containers.run("busybox", ["sleep", "60"], detach=True)
    try:
        mpid = c.api.inspect_container(ct.id)["State"].get("MonitorPid") or _monitor_pid(daemon, ct.id)
        with open(f"/proc/{mpid}/status") as f:
            rss_kb = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]
        exe = os.path.basename(os.readlink(f"/proc/{mpid}/exe"))
        assert exe.startswith("berth-monitor" if monitor == "berth" else "conmon")
        if monitor == "berth":
            assert rss_kb <= 2400, rss_kb  # conmon's ~2.4 MB
    finally:
        ct.remove(force=True)


def test_berth_monitor_is_built_from_the_repository_source(daemon: Daemon, monitor: str) -> None:
    if monitor != "berth":
        pytest.skip("berth-monitor only")
    path = binary_path()
    assert os.access(path, os.X_OK)
    assert subprocess.run([path, "--version"], capture_output=True, text=True).stdout == "berth-monitor 1\n"
    assert "containers run under BerthRuntime" in daemon.log() or shutil.which("gcc") is None


def test_attach_sees_output_from_the_first_byte(daemon: Daemon) -> None:
    """`docker run` attaches before start: the monitor holds the container until attachers are in."""
    for _ in range(5):
        assert daemon.cli("run", "--rm", "busybox", "echo", "first").stdout == b"first\n"
    waited: dict = {}  # type: ignore[type-arg]
    t = threading.Thread(target=lambda: waited.update(r=daemon.cli("run", "busybox", "sh", "-c",
                                                                     "echo out; echo err >&2; exit 4",
                                                                     check=False)))
    t.start()
    t.join(60)
    r = waited["r"]
    assert r.returncode == 4 and r.stdout == b"out\n" and r.stderr == b"err\n"


def _monitor_pid(d: Daemon, cid: str) -> int:
    for name in ("monitor.pid", "conmon.pid"):
        try:
            with open(os.path.join(d.exec_root, "c", cid, name)) as f:
                return int(f.read().strip())
        except FileNotFoundError:
            pass
    return 0


def _processes_naming(cid: str) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if cid.encode() in f.read():
                    with open(f"/proc/{p}/stat") as s:
                        if s.read().rsplit(")", 1)[1].split()[0] != "Z":
                            out.append(int(p))
        except (OSError, ValueError, IndexError):
            pass
    return out
