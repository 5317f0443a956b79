"""The engines the layer benchmark drives side by side: a private berthd, a private dockerd (when
``/usr/sbin/dockerd`` is installed) and podman with private storage (when installed), plus
throw-away registries on 127.0.0.1. Each is started in its own directory and stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from push_pull import free_port, wait_port  # noqa: E402
from run_bench import BenchError, Berthd, run_cmd, unmount_all  # noqa: E402

DOCKER = shutil.which("docker") or "docker"


class Engine:
    """A CLI (docker against berthd or dockerd, or podman) and how it spells push/pull/save."""

    def __init__(self, label: str, argv: list[str], tls_flag: list[str]) -> None:
        self.label = label
        self.argv = argv
        self.tls_flag = tls_flag  # podman talks plain HTTP to 127.0.0.1 only when told
        self.pid: int | None = None

    def cmd(self, *args: str) -> list[str]:
        return self.argv + list(args)

    def run(self, *args: str, timeout: float = 900) -> str:
        return run_cmd(self.cmd(*args), timeout=timeout)

    def timed(self, *args: str, devnull: bool = False) -> float:
        """Seconds for one CLI call; output thrown away (a save is hundreds of MB)."""
        t0 = time.perf_counter()
        p = subprocess.run(self.cmd(*args), stdout=subprocess.DEVNULL if devnull else subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=1800)
        dt = time.perf_counter() - t0
        if p.returncode != 0:
            raise BenchError(f"{self.label} {' '.join(args[:2])}: {p.stderr.decode(errors='replace')[-600:]}")
        return dt

    def rmi(self, *refs: str) -> None:
        for ref in refs:
            subprocess.run(self.cmd("rmi", "-f", ref), capture_output=True, timeout=600)

    def rmi_image(self, ref: str) -> None:
        """Remove the image ``ref`` names with every reference to it: after a push, dockerd and
        podman keep an image (and its layers) alive through its ``repo@digest`` names."""
        p = subprocess.run(self.cmd("image", "inspect", "--format", "{{.Id}}", ref), capture_output=True,
                           text=True, timeout=120)
        if p.returncode == 0 and p.stdout.strip():
            self.rmi(p.stdout.strip())

    def push(self, ref: str) -> float:
        return self.timed("push", *self.tls_flag, ref)

    def pull(self, ref: str) -> float:
        return self.timed("pull", *self.tls_flag, ref)

    def stop(self) -> None:
        pass


class BerthEngine(Engine):
    def __init__(self, root: str) -> None:
        self.daemon = Berthd(root)
        self.daemon.start()
        super().__init__("berth", [DOCKER, "-H", self.daemon.host], [])
        assert self.daemon.proc is not None
        self.pid = self.daemon.proc.pid
        self.data_root = os.path.join(root, "data")

    def stop(self) -> None:
        self.daemon.stop()


class DockerdEngine(Engine):
    def __init__(self, root: str) -> None:
        self.root = root
        sock = os.path.join(root, "d.sock")
        self.log = open(os.path.join(root, "dockerd.log"), "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["/usr/sbin/dockerd", "--data-root", os.path.join(root, "data"), "--exec-root", os.path.join(root, "x"),
             "--pidfile", os.path.join(root, "dockerd.pid"), "-H", f"unix://{sock}", "--iptables=false",
             "--bridge=none", "--storage-driver=overlay2", "--log-level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        super().__init__("dockerd", [DOCKER, "-H", f"unix://{sock}"], [])
        self.pid = self.proc.pid
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"dockerd exited with {self.proc.returncode}; see {root}/dockerd.log")
            if subprocess.run(self.cmd("version"), capture_output=True).returncode == 0:
                break
            if time.monotonic() > deadline:
                self.stop()
                raise BenchError("dockerd did not answer within 60 s")
            time.sleep(0.2)

    def stop(self) -> None:
        subprocess.run(self.cmd("rm", "-f", *self.run("ps", "-aq").split()), capture_output=True) \
            if self.proc.poll() is None else None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        unmount_all(self.root)


class PodmanEngine(Engine):
    def __init__(self, root: str) -> None:
        self.root = root
        super().__init__("podman", ["podman", "--root", os.path.join(root, "storage"), "--runroot",
                                    os.path.join(root, "run"), "--storage-driver", "overlay",
                                    "--cgroup-manager", "cgroupfs", "--events-backend", "none",
                                    "--tmpdir", os.path.join(root, "tmp")], ["--tls-verify=false"])
        self.run("info")

    def push(self, ref: str) -> float:
        return self.timed("push", *self.tls_flag, ref, ref)

    def stop(self) -> None:
        subprocess.run(self.cmd("rm", "-af"), capture_output=True, timeout=300)
        unmount_all(self.root)


class Registry:
    """A registry on 127.0.0.1 with a fresh storage directory: Debian's docker-registry (distribution,
    neutral to every engine) when installed, else Berth's own."""

    def __init__(self, root: str, kind: str) -> None:
        os.makedirs(root, exist_ok=True)
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        if kind == "docker-registry":
            cfg = os.path.join(root, "reg.yml")
            with open(cfg, "w") as f:
                f.write(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\n"
                        f"http:\n  addr: {self.addr}\nlog:\n  level: error\n")
            argv = ["docker-registry", "serve", cfg]
        else:
            argv = [sys.executable, "-m", "berth.registry", "serve", "--addr", self.addr, "--root", f"{root}/data"]
        self.root = root
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


class RssPeak:
    """Samples a process's VmRSS every 20 ms while in use; ``peak_mb`` afterwards."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)
            except OSError:
                return
            self._stop.wait(0.02)

    def __enter__(self) -> RssPeak:
        self._t.start()
        return self

    def __exit__(self, *_a: object) -> None:
        self._stop.set()
        self._t.join()
