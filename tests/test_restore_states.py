"""berthd killed with SIGKILL, then started again: every state the runtime can be left in is settled.

The kill between ``runtime create`` and ``runtime start`` is made exact with the test-only
crash point ``BERTHD_TEST_CRASH_AT=after-runtime-create`` (berth/crashpoint.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator

import pytest

from berth.crashpoint import ENV
from tests.conftest import Daemon, _daemon_fixture, mounts_under


@pytest.fixture(scope="module")
def monitor(each_monitor: str) -> str:
    return each_monitor


@pytest.fixture
def d(busybox_tar: str, monitor: str) -> Iterator[Daemon]:
    yield from _daemon_fixture("overlay", busybox_tar, monitor)


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that is not us."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def bundle_pids(d: Daemon, cid: str) -> tuple[int, int]:
    """(the container's init, its monitor: berth-monitor or conmon)."""
    out = []
    for names in (("pidfile",), ("monitor.pid", "conmon.pid")):
        path = next(p for n in names if os.path.exists(p := os.path.join(d.exec_root, "c", cid, n)))
        with open(path) as f:
            out.append(int(f.read().strip()))
    return out[0], out[1]


def processes_naming(cid: str) -> list[int]:
    """Live processes with the container id on their command line (its monitor, the runtime)."""
    out = []
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if cid.encode() in f.read() and alive(int(p)):
                    out.append(int(p))
        except (OSError, ValueError):
            pass
    return out


def crun(d: Daemon, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["crun", f"--root={os.path.join(d.exec_root, 'runtime-crun')}", *args],
                          capture_output=True, timeout=30)


def restart_crashing_at(d: Daemon, monkeypatch: pytest.MonkeyPatch, point: str) -> None:
    d.stop()
    monkeypatch.setenv(ENV, point)
    d.start()
    monkeypatch.delenv(ENV)


def kill9(d: Daemon) -> None:
    assert d.proc is not None
    d.proc.kill()
    d.proc.wait(15)


def crash_between_create_and_start(d: Daemon, monkeypatch: pytest.MonkeyPatch, name: str,
                                   *opts: str) -> tuple[str, int, int]:
    cid = d.cli("create", "--name", name, *opts, "busybox", "sleep", "1000").stdout.decode().strip()
    restart_crashing_at(d, monkeypatch, "after-runtime-create")
    r = d.cli("start", name, check=False)
    assert r.returncode != 0
    assert d.proc is not None and d.proc.wait(15) == -signal.SIGKILL
    if "berth" in d.extra:
        # berth-monitor runs the runtime only at start: the cut start leaves no runtime state, and the
        # monitor, waiting for a start that will never come, sees its go pipe close and exits
        for _ in range(100):
            if not processes_naming(cid):
                break
            subprocess.run(["sleep", "0.05"])
        assert not processes_naming(cid)
        mon = 0
        assert crun(d, "state", cid).returncode != 0
        return cid, 0, mon
    init, conmon = bundle_pids(d, cid)
    assert alive(init) and alive(conmon), "the crash point must leave the created container behind"
    assert "created" in crun(d, "state", cid).stdout.decode()
    return cid, init, conmon


def test_created_not_started_is_reaped_and_starts_again(d: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    d.cli("run", "--rm", "-v", "keep:/v", "busybox", "sh", "-c", "mkdir /v/sub; echo kept > /v/sub/f")
    cid, init, conmon = crash_between_create_and_start(
        d, monkeypatch, "halfway", "--mount", "type=volume,src=keep,dst=/data,volume-subpath=sub")
    assert [m for m in mounts_under(d.root) if "subpaths" in m]  # the staged subpath the cut start left
    d.start()
    assert not [m for m in mounts_under(d.root) if "subpaths" in m]
    assert not alive(init) and not alive(conmon)
    assert crun(d, "state", cid).returncode != 0  # gone from the runtime
    state = d.client().api.inspect_container("halfway")["State"]
    assert state["Status"] == "created" and not state["Running"]
    assert not [m for m in mounts_under(d.root) if cid in m]  # the rootfs mount of the cut start
    d.cli("start", "halfway")
    state = d.client().api.inspect_container("halfway")["State"]
    assert state["Status"] == "running"
    assert d.cli("exec", "halfway", "cat", "/data/f").stdout == b"kept\n"
    d.cli("rm", "-f", "halfway")
    assert d.cli("run", "--rm", "-v", "keep:/v", "busybox", "cat", "/v/sub/f").stdout == b"kept\n"
    assert not alive(state["Pid"])
    assert d.cli("ps", "-aq").stdout == b""


def rootfs_volatile(cid: str) -> bool | None:
    """Whether container ``cid``'s rootfs is mounted volatile (mountinfo's super options; newer kernels
    say ``fsync=volatile``); None when it is not mounted."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if cid in fields[4] and fields[4].endswith("/merged"):
                return bool({"volatile", "fsync=volatile"} & set(fields[-1].split(",")))
    return None


def test_rm_container_cut_before_start_starts_again(d: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """A --rm container's rootfs is mounted volatile (no sync at unmount): overlay then refuses a second
    mount of the same layer unless berthd clears its marker, which a start after a cut start needs."""
    cid, _, _ = crash_between_create_and_start(d, monkeypatch, "rmhalf", "--rm")
    d.start()
    assert d.client().api.inspect_container("rmhalf")["State"]["Status"] == "created"
    # what the cut run left in its upper layer may be unsynced after a host crash: it is not reused
    upper = os.path.join(d.data_root, "overlay", cid, "diff")
    with open(os.path.join(upper, "leftover"), "w") as f:
        f.write("unsynced")
    d.cli("start", "rmhalf")
    assert d.client().api.inspect_container("rmhalf")["State"]["Running"]
    assert rootfs_volatile(cid) is True
    assert d.cli("exec", "rmhalf", "ls", "/leftover", check=False).returncode != 0
    d.cli("kill", "rmhalf")
    assert d.cli("wait", "rmhalf", check=False).returncode in (0, 1)  # 137, or gone already
    for _ in range(100):
        if not d.cli("ps", "-aq").stdout:
            break
        subprocess.run(["sleep", "0.05"])
    assert d.cli("ps", "-aq").stdout == b""
    assert not [m for m in mounts_under(d.root) if cid in m]
    kept = d.cli("run", "-d", "busybox", "sleep", "100").stdout.decode().strip()
    assert rootfs_volatile(kept) is False  # its writes are synced at unmount
    d.cli("rm", "-f", kept)


def test_started_in_runtime_but_not_recorded_is_adopted(d: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kill came after ``runtime start`` but before the record said running."""
    if "berth" in d.extra:
        cid = d.cli("create", "--name", "unrecorded", "busybox", "sleep", "1000").stdout.decode().strip()
        restart_crashing_at(d, monkeypatch, "after-runtime-start")
        assert d.cli("start", "unrecorded", check=False).returncode != 0
        assert d.proc is not None and d.proc.wait(15) == -signal.SIGKILL
        init, conmon = bundle_pids(d, cid)
        assert alive(init) and alive(conmon)
    else:
        cid, init, conmon = crash_between_create_and_start(d, monkeypatch, "unrecorded")
        assert crun(d, "start", cid).returncode == 0
    d.start()
    state = d.client().api.inspect_container("unrecorded")["State"]
    assert state["Status"] == "running" and state["Pid"] == init
    assert d.cli("exec", "unrecorded", "echo", "adopted").stdout == b"adopted\n"
    d.cli("stop", "-t", "1", "unrecorded")
    state = d.client().api.inspect_container("unrecorded")["State"]
    assert state["Status"] == "exited" and not alive(init) and not alive(conmon)
    d.cli("start", "unrecorded")
    d.cli("rm", "-f", "unrecorded")


def test_running_paused_stopped_and_missing_state(d: Daemon) -> None:
    c = d.client()
    for name in ("runs", "paused", "pause-cut", "resume-cut", "ends", "wiped"):
        d.cli("run", "-d", "--name", name, "busybox", "sleep", "1000")
    d.cli("pause", "paused")
    d.cli("pause", "resume-cut")
    ids = {n: c.api.inspect_container(n)["Id"] for n in ("runs", "paused", "pause-cut", "resume-cut", "ends",
                                                          "wiped")}
    kill9(d)
    # while berthd is down: a pause and a resume it never recorded, an exit, and a reboot-like loss
    # of one container's runtime state, exit file and processes
    assert crun(d, "pause", ids["pause-cut"]).returncode == 0
    assert crun(d, "resume", ids["resume-cut"]).returncode == 0
    os.kill(bundle_pids(d, ids["ends"])[0], signal.SIGKILL)
    init, conmon = bundle_pids(d, ids["wiped"])
    os.kill(conmon, signal.SIGKILL)
    os.kill(init, signal.SIGKILL)
    shutil.rmtree(os.path.join(d.exec_root, "runtime-crun", ids["wiped"]))
    for _ in range(100):
        if not alive(init) and os.path.exists(os.path.join(d.exec_root, "exits", ids["ends"])):
            break
        subprocess.run(["sleep", "0.05"])
    d.start()
    status = {n: c.api.inspect_container(n)["State"] for n in ids}
    assert status["runs"]["Status"] == "running"
    assert status["paused"]["Status"] == "paused"
    assert status["pause-cut"]["Status"] == "paused"
    assert status["resume-cut"]["Status"] == "running"
    assert status["ends"]["Status"] == "exited" and status["ends"]["ExitCode"] == 137
    assert status["wiped"]["Status"] == "exited" and status["wiped"]["ExitCode"] == 255
    d.cli("unpause", "paused")
    d.cli("unpause", "pause-cut")
    d.cli("pause", "resume-cut")
    d.cli("unpause", "resume-cut")
    for name in ("ends", "wiped"):
        d.cli("start", name)
        assert c.api.inspect_container(name)["State"]["Status"] == "running"
    d.cli("rm", "-f", *ids)
    assert d.cli("ps", "-aq").stdout == b""
    assert not [m for m in mounts_under(d.root) if any(i in m for i in ids.values())]
