"""Test fixtures: a real berthd on a private socket and data root, real crun, real overlayfs.

Every daemon, container and mount a test starts is ended here, by PID and by path,
even when the test fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import docker
import pytest

from berth.layers import mount as mnt
from berth.layers.drivers import SHARED_INIT
from berth.tools import mkbusybox

BERTHD = [sys.executable, "-m", "berth.daemon.main"]
DOCKER_CLI = shutil.which("docker")


@dataclass
class Daemon:
    root: str
    driver: str = "overlay"
    runtime: str = "crun"
    proc: subprocess.Popen | None = None
    log_path: str = ""
    extra: list[str] = field(default_factory=list)

    @property
    def sock(self) -> str:
        return os.path.join(self.root, "berth.sock")

    @property
    def host(self) -> str:
        return "unix://" + self.sock

    @property
    def data_root(self) -> str:
        return os.path.join(self.root, "data")

    @property
    def exec_root(self) -> str:
        return os.path.join(self.root, "run")

    @property
    def net_tag(self) -> str:
        """Each test daemon's own default bridge and iptables chains (several run at once on one host)."""
        return "t" + hashlib.sha256(self.root.encode()).hexdigest()[:7]

    def argv(self) -> list[str]:
        net = [] if any(a.startswith(("--bridge", "--bip")) for a in self.extra) else ["--bridge", "b" + self.net_tag]
        return [*BERTHD, "-H", self.host, "--data-root", self.data_root, "--exec-root", self.exec_root,
                "--storage-driver", self.driver, "--default-runtime", self.runtime, "--network-tag", self.net_tag,
                "--default-address-pool", "base=172.30.0.0/16,size=24", *net, *self.extra]

    def start(self, timeout: float = 15) -> None:
        self.log_path = os.path.join(self.root, "berthd.log")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"berthd exited {self.proc.returncode}:\n{self.log()}")
            try:
                if self.client().ping():
                    return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError(f"berthd did not become ready:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-40000:]
        except OSError:
            return ""

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, version="1.45", timeout=60)

    def cli(self, *args: str, input: bytes | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
        if DOCKER_CLI is None:
            pytest.skip("the docker CLI is not installed")
        env = dict(os.environ, DOCKER_HOST=self.host)
        env.pop("DOCKER_CONTEXT", None)
        r = subprocess.run([DOCKER_CLI, *args], input=input, capture_output=True, env=env, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({r.returncode}): {r.stderr.decode()}")
        return r


def cleanup_daemon(d: Daemon) -> None:
    """Remove the daemon's containers, stop it, then make sure nothing of it is left."""
    if d.proc is not None and d.proc.poll() is None:
        try:
            c = d.client()
            for ct in c.api.containers(all=True):
                try:
                    c.api.remove_container(ct["Id"], force=True)
                except Exception:
                    pass
        except Exception:
            pass
        d.stop()
    kill_leftover_containers(d)
    if os.path.exists(os.path.join(d.data_root, "berth.db")):
        # bridges, veths and iptables chains outlive berthd by design: take this daemon's away
        subprocess.run([*d.argv(), "--network-cleanup"], capture_output=True, timeout=60)
    for target in mounts_under(d.root):
        mnt.unmount(target)
    shutil.rmtree(d.root, ignore_errors=True)


def kill_leftover_containers(d: Daemon) -> None:
    """Containers outlive berthd by design; a test's daemon root must not outlive the test."""
    run_dir = os.path.join(d.exec_root, "c")
    if not os.path.isdir(run_dir):
        return
    for cid in os.listdir(run_dir):
        for name in ("pidfile", "conmon.pid", "monitor.pid"):
            try:
                with open(os.path.join(run_dir, cid, name)) as f:
                    os.kill(int(f.read().strip()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        for rt in ("crun", "runc"):
            state = os.path.join(d.exec_root, f"runtime-{rt}")
            if os.path.isdir(state):
                subprocess.run([rt, f"--root={state}", "delete", "--force", cid], capture_output=True)


def mounts_under(root: str) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4]
            if target.startswith(root.rstrip("/") + "/"):
                out.append(target)
    return sorted(out, key=len, reverse=True)


def new_daemon(driver: str = "overlay", runtime: str = "crun", extra: list[str] | None = None,
               long_root: bool = False) -> Daemon:
    # /var/tmp is on the root filesystem (ext4 here): overlayfs needs a real fs for its upper layer.
    # ``long_root`` makes socket paths under the root exceed the 107-byte unix socket limit.
    root = tempfile.mkdtemp(prefix="berth-test-" + ("long-" * 12 if long_root else ""), dir="/var/tmp")
    return Daemon(root=root, driver=driver, runtime=runtime, extra=extra or [])


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("images") / "busybox.tar")
    with open(path, "wb") as f:
        f.write(mkbusybox.build("/bin/busybox", "busybox:latest"))
    return path


@pytest.fixture(scope="session")
def busybox_id(busybox_tar: str) -> str:
    import tarfile

    with tarfile.open(busybox_tar) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
    return "sha256:" + manifest[0]["Config"].rsplit("/", 1)[1]


def _daemon_fixture(driver: str, busybox_tar: str, monitor: str = "auto") -> Iterator[Daemon]:
    d = new_daemon(driver, extra=["--monitor", monitor])
    try:
        d.start()
        with open(busybox_tar, "rb") as f:
            list(d.client().api.load_image(f.read()))
        yield d
    finally:
        cleanup_daemon(d)


@pytest.fixture(scope="module")
def monitor() -> str:
    """The daemons' ``--monitor``. Modules about the monitor override it with ``each_monitor``
    (``def monitor(each_monitor: str) -> str``) to run against berth-monitor and conmon both."""
    return os.environ.get("BERTH_TEST_MONITOR", "auto")


@pytest.fixture(scope="module", params=["berth", "conmon"])
def each_monitor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def daemon(busybox_tar: str, monitor: str) -> Iterator[Daemon]:
    """A berthd (overlay driver, crun) with busybox:latest loaded; shared by a test module."""
    yield from _daemon_fixture("overlay", busybox_tar, monitor)


@pytest.fixture(scope="module")
def client(daemon: Daemon) -> docker.DockerClient:
    return daemon.client()


@pytest.fixture
def fresh_daemon(busybox_tar: str, monitor: str) -> Iterator[Daemon]:
    """A daemon of the test's own, for tests that restart or break it."""
    yield from _daemon_fixture("overlay", busybox_tar, monitor)


def store_snapshot(d: Daemon) -> dict[str, object]:
    """What a failed request must leave unchanged: images, tags and layer directories on disk."""
    c = d.client()
    images = sorted((i["Id"], tuple(i["RepoTags"] or ())) for i in c.api.images(all=True))
    layer_dirs = []
    for sub in ("overlay", "vfs/dir"):
        p = os.path.join(d.data_root, sub)
        if os.path.isdir(p):
            # the driver's own entries (overlay's shared init layer among them) are not image layers
            layer_dirs += sorted(x for x in os.listdir(p) if x not in ("l", "empty", ".trash", SHARED_INIT))
    ingest = os.path.join(d.data_root, "content", "ingest")  # blobs being written: none once a request ends
    return {"images": images, "layers": layer_dirs,
            "tmp": sorted(os.listdir(os.path.join(d.data_root, "tmp"))),
            "ingest": sorted(os.listdir(ingest)) if os.path.isdir(ingest) else []}
