"""berthd's cgroup warm-up (berth/runtime/cgroupwarm.py) writes only to the cgroup it is in: the file
it picks for each layout of /proc/self/cgroup, and a real warm-up that leaves berthd where it was."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from berth.runtime.cgroupwarm import own_procs_file


def _tree(root: str, *dirs: str) -> None:
    for d in dirs:
        os.makedirs(os.path.join(root, d), exist_ok=True)
        open(os.path.join(root, d, "cgroup.procs"), "w").close()


def test_v1_picks_a_mounted_hierarchy_at_the_process_own_path(tmp_path: pytest.TempPathFactory) -> None:
    root = str(tmp_path)
    _tree(root, "pids/a/b")  # hugetlb is not mounted here
    text = "10:hugetlb:/a/b\n8:pids:/a/b\n1:name=systemd:/a/b\n0::/a/b\n"
    assert own_procs_file(text, root) == f"{root}/pids/a/b/cgroup.procs"


def test_named_v1_hierarchy_and_root_path(tmp_path: pytest.TempPathFactory) -> None:
    root = str(tmp_path)
    _tree(root, "systemd")
    assert own_procs_file("1:name=systemd:/\n", root) == f"{root}/systemd/cgroup.procs"


def test_v2_and_hybrid(tmp_path: pytest.TempPathFactory) -> None:
    root = str(tmp_path)
    _tree(root, "x.slice")
    assert own_procs_file("0::/x.slice\n", root) == f"{root}/x.slice/cgroup.procs"
    hybrid = os.path.join(root, "h")
    _tree(hybrid, "unified/y")
    assert own_procs_file("0::/y\n", hybrid) == f"{hybrid}/unified/y/cgroup.procs"


def test_nothing_mounted_is_none(tmp_path: pytest.TempPathFactory) -> None:
    assert own_procs_file("8:pids:/a\n0::/a\n", str(tmp_path)) is None
    assert own_procs_file("garbage\n", str(tmp_path)) is None


def test_a_real_warm_up_leaves_the_process_in_its_cgroups() -> None:
    """Run in a child process: the write moves it into the cgroup it is already in, i.e. nowhere."""
    code = ("import time; from berth.runtime.cgroupwarm import warmer\n"
            "before = open('/proc/self/cgroup').read(); warmer.warm()\n"
            "time.sleep(0.5); assert not warmer._busy.locked(), 'the warm-up did not finish'\n"
            "assert open('/proc/self/cgroup').read() == before\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0, r.stderr
