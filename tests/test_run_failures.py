"""`docker run --rm` of a container that cannot start: the CLI waits for its removal (condition
`removed`), so the daemon must remove it after the failed start, as Docker does."""

from __future__ import annotations

import os
import time

import pytest

from tests.conftest import Daemon


@pytest.mark.parametrize("argv, code", [(["nosuchcmd"], 127), (["/etc/passwd"], 126)])
def test_run_rm_of_a_command_that_cannot_start(daemon: Daemon, argv: list[str], code: int) -> None:
    before = {c["Id"] for c in daemon.client().api.containers(all=True)}
    r = daemon.cli("run", "--rm", "busybox", *argv, check=False, timeout=30)
    assert r.returncode == code, r.stderr
    assert b"Traceback" not in r.stderr and r.stderr.strip()
    after = {c["Id"] for c in daemon.client().api.containers(all=True)}
    assert after == before  # removed, not left in Created


def _monitors_of(daemon: Daemon) -> list[int]:
    """berth-monitor processes serving this daemon's containers (their command line names its root)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"berth-monitor" in argv[0] and any(daemon.root.encode() in a for a in argv):
            pids.append(int(pid))
    return pids


def test_run_rm_with_a_missing_volume_subpath_reports_and_removes(daemon: Daemon) -> None:
    """The subpath fails while the container's monitor is still being launched beside it: the failed
    start must wait for that monitor to be gone before the removal takes the bundle away (a removal
    racing it failed on a vanished file and left the container, and `docker run`, hanging)."""
    c = daemon.client()
    vol = c.volumes.create()
    try:
        for _ in range(25):
            r = daemon.cli("run", "--rm", "--mount", f"type=volume,src={vol.name},dst=/m,volume-subpath=nope",
                           "busybox", "true", check=False, timeout=30)
            assert r.returncode == 125 and b"subpath does not exist" in r.stderr, r.stderr
        deadline = time.monotonic() + 5
        while _monitors_of(daemon) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _monitors_of(daemon)
        assert not [x for x in c.api.containers(all=True) if any(m.get("Name") == vol.name
                                                                 for m in x.get("Mounts") or [])]
        assert os.listdir(os.path.join(daemon.exec_root, "c")) == []
    finally:
        vol.remove(force=True)
