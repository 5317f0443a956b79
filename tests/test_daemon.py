"""berthd itself: lock, clean shutdown, containers that outlive the daemon, both drivers, both runtimes."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.conftest import BERTHD, Daemon, cleanup_daemon, mounts_under, new_daemon


def test_second_daemon_on_same_root_is_refused(fresh_daemon: Daemon) -> None:
    r = subprocess.run([*BERTHD, "-H", "unix://" + os.path.join(fresh_daemon.root, "other.sock"),
                        "--data-root", fresh_daemon.data_root, "--exec-root", fresh_daemon.exec_root + "2"],
                       capture_output=True, timeout=30)
    assert r.returncode != 0
    assert b"already using data root" in r.stderr
    assert fresh_daemon.client().ping()


def test_sigterm_shuts_down_cleanly(fresh_daemon: Daemon) -> None:
    assert fresh_daemon.stop(signal.SIGTERM) == 0
    assert not os.path.exists(fresh_daemon.sock)
    assert "shutting down" in fresh_daemon.log()


def test_a_clean_stop_leaves_no_trash(fresh_daemon: Daemon) -> None:
    """Removed containers' files are deleted in the background; a clean stop lets that finish, so
    `berth check` after it finds nothing left over."""
    for _ in range(3):
        fresh_daemon.cli("run", "--rm", "busybox", "sh", "-c", "mkdir -p /x && for i in 1 2 3 4; do echo > /x/$i; done")
    assert fresh_daemon.stop() == 0
    trash = [os.path.join(fresh_daemon.data_root, sub, ".trash") for sub in ("containers", "overlay", "volumes")]
    assert [(t, os.listdir(t)) for t in trash if os.path.isdir(t) and os.listdir(t)] == []


def test_containers_survive_kill_9_of_berthd(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    c = d.client()
    ct = c.containers.run("busybox", ["sh", "-c", "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.1; done"],
                          detach=True, name="survivor")
    c.containers.run("busybox", ["sh", "-c", "sleep 1; exit 42"], detach=True, name="ends-while-down")
    time.sleep(0.3)
    pid = c.api.inspect_container(ct.id)["State"]["Pid"]
    d.stop(signal.SIGKILL)
    time.sleep(1.5)  # "ends-while-down" exits while nobody watches
    os.kill(pid, 0)  # still running without berthd
    d.start()
    c = d.client()
    info = c.api.inspect_container("survivor")["State"]
    assert info["Running"] and info["Pid"] == pid
    down = c.api.inspect_container("ends-while-down")["State"]
    assert down["Status"] == "exited" and down["ExitCode"] == 42
    assert down["FinishedAt"] > down["StartedAt"]
    # logs have no gap: the counter runs on without a missing number
    logs = c.containers.get("survivor").logs().decode().split()
    nums = [int(x[4:]) for x in logs]
    assert nums == list(range(len(nums))) and len(nums) > 10
    # exec, logs -f, attach, wait and stop all work on the restored container
    assert c.containers.get("survivor").exec_run(["echo", "still here"]).output == b"still here\n"
    follow = c.api.logs("survivor", stream=True, follow=True, tail=0)
    assert next(follow).startswith(b"tick")  # new lines arrive through the follower
    attached = c.api.attach("survivor", stream=True, logs=False)
    assert next(attached).startswith(b"tick")
    import threading

    waited: dict = {}
    waiter = threading.Thread(target=lambda: waited.update(c.api.wait("survivor")))
    waiter.start()
    time.sleep(0.2)
    c.api.stop("survivor", timeout=1)
    waiter.join(20)
    assert waited["StatusCode"] == 137  # sh as PID 1 ignores SIGTERM: killed after the timeout
    assert c.api.inspect_container("survivor")["State"]["Status"] == "exited"
    c.api.remove_container("survivor")
    c.api.remove_container("ends-while-down")
    assert not [m for m in mounts_under(d.root) if "merged" in m]


@pytest.mark.parametrize(("driver", "runtime"), [("vfs", "crun"), ("overlay", "runc")])
def test_other_driver_and_runtime(busybox_tar: str, driver: str, runtime: str) -> None:
    d = new_daemon(driver, runtime)
    try:
        d.start()
        c = d.client()
        with open(busybox_tar, "rb") as f:
            list(c.api.load_image(f.read()))
        assert c.info()["Driver"] == driver
        out = c.containers.run("busybox", ["sh", "-c", "echo hi > /f; cat /f; rm /bin/ls; ls 2>&1; true"],
                               remove=True)
        assert out.startswith(b"hi\n")
        # the image is untouched by the container's writes and deletes
        assert c.containers.run("busybox", ["sh", "-c", "ls /f 2>&1; ls -d /bin/ls"], remove=True) \
            .endswith(b"/bin/ls\n")
        r = d.cli("run", "--rm", "busybox", "sh", "-c", "exit 3", check=False)
        assert r.returncode == 3
    finally:
        cleanup_daemon(d)


def test_restart_with_stopped_containers_and_images_kept(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    c = d.client()
    c.containers.run("busybox", ["true"], name="kept")
    d.stop()
    d.start()
    c = d.client()
    assert c.api.inspect_container("kept")["State"]["Status"] == "exited"
    assert c.containers.run("busybox", ["echo", "again"], remove=True) == b"again\n"
    c.api.remove_container("kept")


def test_attach_works_with_a_long_exec_root(busybox_tar: str) -> None:
    """conmon's attach socket path is exec-root + 64-hex id + /attach; beyond 107 bytes too."""
    d = new_daemon(long_root=True)
    try:
        d.start()
        with open(busybox_tar, "rb") as f:
            list(d.client().api.load_image(f.read()))
        assert len(os.path.join(d.exec_root, "c", "x" * 64, "attach")) > 108
        assert d.cli("run", "--rm", "busybox", "echo", "long").stdout == b"long\n"
    finally:
        cleanup_daemon(d)


def test_berth_check_finds_damage(fresh_daemon: Daemon) -> None:
    """`berth check` refuses a running daemon's root, passes a healthy one, and finds a layer whose
    files changed on disk and a config blob that went missing."""
    import glob
    import sys

    d = fresh_daemon
    check = [sys.executable, "-m", "berth.cli.main", "check", "--data-root", d.data_root, "--verify-data"]
    r = subprocess.run(check, capture_output=True, timeout=60)
    assert r.returncode == 2 and b"already using data root" in r.stderr
    d.stop()
    r = subprocess.run(check, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert b"checked 1 images" in r.stdout and r.stdout.rstrip().endswith(b"ok")
    victim = glob.glob(os.path.join(d.data_root, "overlay", "*", "diff", "etc", "passwd"))[0]
    original = open(victim, "rb").read()
    with open(victim, "r+b") as f:
        f.write(b"toor")  # same size, other bytes
    r = subprocess.run(check, capture_output=True, timeout=60)
    assert r.returncode == 1 and b"content changed on disk" in r.stdout
    with open(victim, "wb") as f:
        f.write(original + b"intruder:x:0:0::/:/bin/sh\n")  # longer than recorded
    r = subprocess.run(check, capture_output=True, timeout=60)
    assert r.returncode == 1 and b"longer than recorded" in r.stdout
    blob = glob.glob(os.path.join(d.data_root, "content", "blobs", "sha256", "*"))[0]
    os.unlink(blob)
    r = subprocess.run(check, capture_output=True, timeout=60)
    assert b"config blob" in r.stdout and b"is missing" in r.stdout
    d.start()  # so the fixture's cleanup finds a daemon to talk to
