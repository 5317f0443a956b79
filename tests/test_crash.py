"""Crash safety: berthd killed with SIGKILL in the middle of what it writes.

The long test kills one berthd 50 times at seeded random points (and at the crash points of
berth/crashpoint.py) during load, pull, push, commit, rm and volume rm, and after every kill
checks what a user would: ``berth check --verify-data`` finds no problem, the daemon comes
back without leftovers, every image runs, and the interrupted operation succeeds when retried.
The shorter tests pin the three bugs it was written for. ``-m crash`` selects this module.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from berth.crashpoint import ENV
from berth.daemon import leftovers
from berth.daemon.check import main as check_main
from berth.tools import mkbusybox
from tests.conftest import DOCKER_CLI, Daemon, cleanup_daemon, new_daemon, store_snapshot
from tests.imagetools import layer_tar, save_tar
from tests.test_registry_e2e import Reg

pytestmark = pytest.mark.crash
CHECK = [sys.executable, "-m", "berth.cli.main", "check", "--verify-data", "--data-root"]


def check(d: Daemon) -> str:
    """``berth check --verify-data`` on the stopped daemon's root; its output. It must find no problem."""
    r = subprocess.run([*CHECK, d.data_root], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    return r.stdout.decode()


def check_here(d: Daemon) -> str:
    """The same command's entry point, run in this process: the 50 kills cannot afford 50 interpreters."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = check_main(["--verify-data", "--data-root", d.data_root])
    assert rc == 0, out.getvalue()
    return out.getvalue()


def stale(d: Daemon) -> list[leftovers.Leftover]:
    """Leftovers in a running daemon's root, less the trash it is still emptying in the background."""
    conn = sqlite3.connect(f"file:{os.path.join(d.data_root, 'berth.db')}?mode=ro", uri=True)
    try:
        found = leftovers.find(d.data_root, conn)
    finally:
        conn.close()
    return [x for x in found if not os.path.dirname(x.path).endswith(".trash")]


# -- the bugs, one by one ------------------------------------------------------------------------------------
def test_bad_change_on_commit_leaves_nothing(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.cli("run", "--name", "src", "busybox", "sh", "-c", "echo data > /made")
    before = store_snapshot(d)
    r = d.cli("commit", "--change", "BOGUS x", "src", "bogus:1", check=False)
    assert r.returncode != 0 and b"BOGUS is not a valid change command" in r.stderr
    r = d.cli("commit", "--change", "ENV =novalue", "src", check=False)
    assert r.returncode != 0 and b"invalid key=value pair" in r.stderr
    assert store_snapshot(d) == before
    assert len(os.listdir(os.path.join(d.data_root, "layers", "tarsplit"))) == 1
    iid = d.cli("commit", "--change", "ENV A=1", "src", "good:1").stdout.decode().strip()
    assert d.cli("run", "--rm", iid, "sh", "-c", "cat /made; echo $A").stdout == b"data\n1\n"


def test_volume_dir_left_by_a_crash_is_adopted(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.stop()
    vols = os.path.join(d.data_root, "volumes")
    os.makedirs(os.path.join(vols, "kept", "_data"))
    with open(os.path.join(vols, "kept", "_data", "file"), "w") as f:
        f.write("survived\n")
    os.makedirs(os.path.join(vols, "half"))  # a create cut before its _data
    os.makedirs(os.path.join(vols, ".tmp-0123456789abcdef", "_data"))  # a create cut before its rename
    out = check(d)
    assert f"leftover: {os.path.join(vols, 'kept')} (volume directory of no volume, no record; berthd adopts" in out
    assert f"leftover: {os.path.join(vols, '.tmp-0123456789abcdef')} (volume being created" in out
    d.start()
    assert not os.path.exists(os.path.join(vols, ".tmp-0123456789abcdef"))
    for name in ("kept", "half"):
        assert d.cli("volume", "create", name).stdout.strip() == name.encode()
    assert d.cli("run", "--rm", "-v", "kept:/v", "busybox", "cat", "/v/file").stdout == b"survived\n"
    d.cli("run", "--rm", "-v", "half:/v", "busybox", "touch", "/v/x")
    # and while the daemon runs: a directory whose record went (a remove cut short) does not block create
    d.cli("volume", "rm", "half")
    os.makedirs(os.path.join(vols, "again", "_data"))
    assert d.cli("volume", "create", "again").returncode == 0
    d.cli("volume", "rm", "kept", "again")


def test_temporaries_are_reported_then_removed_at_start(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    cid = d.cli("create", "busybox", "true").stdout.decode().strip()
    d.stop()
    j = os.path.join
    planted = [j(d.data_root, "tmp", "0123.tar"), j(d.data_root, ".tmp-0011223344556677"),
               j(d.data_root, "layers", "tarsplit", "ab" * 32 + ".gz.tmp"),
               j(d.data_root, "layers", "tarsplit", "cd" * 32 + ".gz"),
               j(d.data_root, "content", "ingest", ".tmp-x1y2z3"),
               j(d.data_root, "content", "blobs", "sha256", "ef" * 32),
               j(d.data_root, "content", "blobs", "sha256", ".tmp-a1b2c3d4"),
               j(d.data_root, "distribution", "blobs", ".tmp-x1y2z3"),  # an older root's blob directories
               j(d.data_root, "image", "blobs", "sha256", ".tmp-a1b2c3d4"),
               j(d.data_root, "containers", cid, "hosts.tmp-a1b2c3d4")]
    for p in planted:
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(b"partial")
    orphan_layer = j(d.data_root, "overlay", "12" * 32)
    os.makedirs(j(orphan_layer, "diff"))
    out = check(d)
    for p in [*planted, orphan_layer]:
        line = next((ln for ln in out.splitlines() if ln.startswith(f"leftover: {p} (")), "")
        assert line.endswith("berthd removes it when it starts)"), out
    d.start()
    assert not [p for p in [*planted, orphan_layer] if os.path.exists(p)]
    assert stale(d) == []
    d.cli("start", "-a", cid)
    d.stop()
    assert "leftover" not in check(d).replace("removal in progress", "")
    d.start()


# -- the random kills ------------------------------------------------------------------------------------
def crash_image() -> bytes:
    rng = random.Random(7)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or os.stat("/bin/busybox").st_mtime)
    base = mkbusybox.build_layer("/bin/busybox", epoch)
    many = layer_tar([("many", "dir")] + [(f"many/f{i}", "file", rng.randbytes(4096)) for i in range(400)])
    big = layer_tar([("big", "file", rng.randbytes(3 << 20))])
    return save_tar([([base, many, big], "crashimg:latest", None)])


class Crasher:
    def __init__(self, d: Daemon, reg: Reg, image_tar: str, rng: random.Random) -> None:
        self.d, self.reg, self.tar, self.rng = d, reg, image_tar, rng
        self.env = dict(os.environ, DOCKER_HOST=d.host)
        self.env.pop(ENV, None)
        self.remote = f"{reg.addr}/crash/img"
        self.counts: dict[str, int] = {}
        self.leftovers_seen = 0
        self.phases: dict[str, float] = {}

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.d.cli(*args, check=check, timeout=120)

    def restart(self, crash_at: str = "") -> None:
        env = dict(self.env)
        if crash_at:
            env[ENV] = crash_at
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            self.d.start()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def has_image(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref, check=False).returncode == 0

    # each operation: (set-up, argv of the interrupted command, retry-and-verify)
    def op(self, name: str, i: int) -> tuple[list[str], float]:
        if name == "load":
            if self.has_image("crashimg"):
                self.docker("rmi", "-f", "crashimg")
            return ["load", "-i", self.tar], 0.8
        if name == "pull":
            for ref in ("crashimg", self.remote):
                if self.has_image(ref):
                    self.docker("rmi", "-f", ref)
            return ["pull", self.remote], 0.8
        if name == "push":
            self.ensure_crashimg()
            self.docker("run", "--name", f"p{i}", "crashimg", "sh", "-c", f"head -c 1500000 /dev/urandom > /r{i}")
            self.docker("commit", f"p{i}", f"{self.remote}-p:{i}")
            self.docker("rm", f"p{i}")
            return ["push", f"{self.remote}-p:{i}"], 0.6
        if name == "commit":
            self.ensure_crashimg()
            if self.docker("inspect", "cm", check=False).returncode != 0:
                self.docker("run", "--name", "cm", "crashimg", "sh", "-c", "cp -a /many /many2; cp /big /big2")
            return ["commit", "cm", f"committed:{i}"], 0.6
        if name == "rm":
            self.ensure_crashimg()
            self.docker("run", "-d", "--name", "rmme", "-v", "/anon", "crashimg", "sh", "-c",
                        "cp -a /many /anon/; cp /big /big2; sleep 1000")
            return ["rm", "-f", "-v", "rmme"], 0.4
        assert name == "vrm"
        self.ensure_crashimg()
        self.docker("volume", "create", "vrm")
        self.docker("run", "--rm", "-v", "vrm:/v", "crashimg", "cp", "-a", "/many", "/big", "/v/")
        return ["volume", "rm", "vrm"], 0.2

    def retry(self, name: str, argv: list[str], i: int) -> None:
        r = self.docker(*argv, check=False)
        if name == "rm":
            assert r.returncode == 0 or b"No such container" in r.stderr, r.stderr
            assert b"rmme" not in self.docker("ps", "-a", "--format", "{{.Names}}").stdout
        elif name == "vrm":
            assert r.returncode == 0 or b"no such volume" in r.stderr, r.stderr
            assert b"vrm" not in self.docker("volume", "ls", "-q").stdout
        else:
            assert r.returncode == 0, r.stderr
        if name == "load":
            assert self.docker("run", "--rm", "crashimg", "sh", "-c", "ls /many | wc -l").stdout.strip() == b"400"
        elif name == "pull":
            assert self.docker("run", "--rm", self.remote, "sh", "-c", "ls /many | wc -l").stdout.strip() == b"400"
        elif name == "push":
            self.docker("rmi", f"{self.remote}-p:{i}")
        elif name == "commit":
            out = self.docker("run", "--rm", f"committed:{i}", "sh", "-c", "ls /many2 | wc -l; cmp /big /big2")
            assert out.stdout.strip() == b"400"
            self.docker("rmi", f"committed:{i}")

    def ensure_crashimg(self) -> None:
        if not self.has_image("crashimg"):
            self.docker("load", "-i", self.tar)

    def every_image_runs(self) -> None:
        assert DOCKER_CLI is not None
        runs = {iid: subprocess.Popen([DOCKER_CLI, "run", "--rm", iid, "true"], env=self.env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                for iid in set(self.docker("images", "-aq").stdout.decode().split())}
        for iid, p in runs.items():
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, f"image {iid} does not run: {err.decode()}"

    def lap(self, phase: str, t: float) -> float:
        now = time.monotonic()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - t
        return now

    def round(self, i: int, name: str, crash_at: str) -> None:
        t = time.monotonic()
        argv, max_delay = self.op(name, i)
        t = self.lap("set-up", t)
        if crash_at:  # an exact point: the daemon kills itself there
            self.d.stop()
            self.restart(crash_at)
        assert DOCKER_CLI is not None
        cli = subprocess.Popen([DOCKER_CLI, *argv], env=self.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        assert self.d.proc is not None
        if crash_at:
            assert self.d.proc.wait(60) == -9, f"crash point {crash_at} was not reached"
        else:
            time.sleep(self.rng.uniform(0, max_delay))
            self.d.proc.kill()
            self.d.proc.wait(15)
        try:
            cli.wait(30)
        except subprocess.TimeoutExpired:
            cli.kill()
            cli.wait()
        t = self.lap("kill", t)
        self.leftovers_seen += check_here(self.d).count("\nleftover: ")
        t = self.lap("check", t)
        self.restart()
        t = self.lap("restart", t)
        assert stale(self.d) == [], f"round {i} ({name}): leftovers after start"
        self.every_image_runs()
        t = self.lap("images run", t)
        self.retry(name, argv, i)
        self.lap("retry " + name, t)
        self.counts[name] = self.counts.get(name, 0) + 1


@pytest.fixture
def crash_setup(busybox_tar: str, tmp_path) -> Iterator[tuple[Daemon, Reg, str]]:  # type: ignore[no-untyped-def]
    d = new_daemon()
    reg = Reg(None)
    try:
        d.start()
        with open(busybox_tar, "rb") as f:
            list(d.client().api.load_image(f.read()))
        tar = str(tmp_path / "crashimg.tar")
        with open(tar, "wb") as f:
            f.write(crash_image())
        yield d, reg, tar
    finally:
        cleanup_daemon(d)
        reg.close()


@pytest.mark.timeout(420)
def test_sigkill_at_random_points(crash_setup: tuple[Daemon, Reg, str]) -> None:
    d, reg, tar = crash_setup
    rng = random.Random(int(os.environ.get("BERTH_CRASH_SEED", "20240605")))
    c = Crasher(d, reg, tar, rng)
    c.docker("load", "-i", tar)
    c.docker("tag", "crashimg", c.remote)
    c.docker("push", c.remote)
    ops = ["load", "pull", "push", "commit", "rm", "vrm"]
    schedule: list[tuple[str, str]] = [(op, "") for op in ops for _ in range(7)]
    schedule += [("commit", "commit-after-extract"), ("vrm", "volume-rm-after-db")] * 2
    schedule += [("load", ""), ("pull", ""), ("push", ""), ("commit", "")]
    rng.shuffle(schedule)
    t0 = time.monotonic()
    for i, (name, point) in enumerate(schedule):
        c.round(i, name, point)
    elapsed = time.monotonic() - t0
    print(f"{len(schedule)} kills in {elapsed:.0f} s; check reported {c.leftovers_seen} leftovers; {c.counts}")
    print("seconds by phase:", {k: round(v, 1) for k, v in sorted(c.phases.items())})
    assert len(schedule) >= 50 and set(c.counts) == set(ops)
