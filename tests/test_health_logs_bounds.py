"""berthd stays small and responsive whatever a container prints: endless health-probe output,
and ``docker logs --tail`` on a log of a few hundred megabytes."""

from __future__ import annotations

import threading
import time

import docker
import pytest

from tests.conftest import Daemon


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class PingWatch:
    """Pings the daemon from a thread while something else runs; keeps the slowest answer."""

    def __init__(self, d: Daemon) -> None:
        self.client = d.client()
        self.worst = 0.0
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            self.client.ping()
            self.worst = max(self.worst, time.monotonic() - t)
            self.count += 1
            time.sleep(0.02)

    def __enter__(self) -> PingWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_endless_probe_output_keeps_berthd_small(daemon: Daemon, client: docker.DockerClient) -> None:
    assert daemon.proc is not None
    pid = daemon.proc.pid
    ct = client.containers.run("busybox", ["sleep", "120"], detach=True, healthcheck={
        "Test": ["CMD", "yes", "0123456789abcdef0123456789abcdef0123456789abcdef"],
        "Interval": 200_000_000, "Timeout": 1_000_000_000, "Retries": 100})
    try:
        base = _rss_kib(pid)
        peak = base
        deadline = time.monotonic() + 30
        entries: list[dict] = []
        while time.monotonic() < deadline and len(entries) < 3:  # a few whole probes, each cut at 1 s
            peak = max(peak, _rss_kib(pid))
            entries = (client.api.inspect_container(ct.id)["State"].get("Health") or {}).get("Log") or []
            time.sleep(0.05)
        assert len(entries) >= 3, entries
        # unbounded, the output of three one-second probes is gigabytes; a bounded one is noise
        assert peak - base < 64 * 1024, f"berthd grew from {base} KiB to {peak} KiB"
        for e in entries:
            assert e["ExitCode"] == -1 and e["Output"] == "Health check exceeded timeout (1s)"
            assert len(e["Output"].encode()) <= 4096
    finally:
        ct.remove(force=True)


def test_probe_output_is_cut_at_4096_bytes(client: docker.DockerClient) -> None:
    # 8 MB of output, then success: the pipe is drained to the end, and 4096 bytes are kept, as Docker does
    ct = client.containers.run("busybox", ["sleep", "120"], detach=True, healthcheck={
        "Test": ["CMD-SHELL", "head -c 8000000 /dev/zero | tr '\\0' y; exit 0"],
        "Interval": 300_000_000, "Timeout": 20_000_000_000, "Retries": 1})
    try:
        deadline = time.monotonic() + 30
        health: dict = {}
        while time.monotonic() < deadline and health.get("Status") != "healthy":
            health = client.api.inspect_container(ct.id)["State"].get("Health") or {}
            time.sleep(0.1)
        assert health.get("Status") == "healthy", health
        out = health["Log"][-1]["Output"]
        assert health["Log"][-1]["ExitCode"] == 0
        assert out == "y" * 4096 + "..."  # moby's limitedBuffer: the first 4096 bytes, "..." for the rest
    finally:
        ct.remove(force=True)


LINE = "x" * 120


@pytest.fixture(scope="module")
def big_log(client: docker.DockerClient) -> docker.models.containers.Container:
    """A stopped container whose log holds 1.2 M lines (about 200 MB on disk), then five known ones."""
    script = f"yes {LINE} | head -n 1200000; for i in 1 2 3 4 5 6; do echo end-$i; done; printf tail-no-newline"
    ct = client.containers.run("busybox", ["sh", "-c", script], detach=True)
    try:
        assert ct.wait(timeout=300)["StatusCode"] == 0
        yield ct
    finally:
        ct.remove(force=True)


def test_logs_tail_of_a_big_log_reads_from_the_end(daemon: Daemon, client: docker.DockerClient,
                                                   big_log: docker.models.containers.Container) -> None:
    import os

    assert os.path.getsize(client.api.inspect_container(big_log.id)["LogPath"]) > 150_000_000
    with PingWatch(daemon) as watch:
        t = time.monotonic()
        out = daemon.cli("logs", "--tail", "5", big_log.id).stdout
        took = time.monotonic() - t
    assert out == b"end-2\nend-3\nend-4\nend-5\nend-6\ntail-no-newline"
    assert watch.count > 0 and watch.worst < 0.5, f"a ping took {watch.worst:.2f}s"
    assert took < 5, f"--tail 5 took {took:.1f}s"
    assert big_log.logs(tail=1, timestamps=True).decode().endswith(" tail-no-newline")
    assert big_log.logs(tail=0) == b""


def test_logs_all_of_a_big_log_streams_without_stalling(daemon: Daemon, client: docker.DockerClient,
                                                        big_log: docker.models.containers.Container) -> None:
    with PingWatch(daemon) as watch:
        out = daemon.cli("logs", big_log.id, timeout=120).stdout
    assert out.count(b"\n") == 1_200_006
    assert len(out) == 1_200_000 * (len(LINE) + 1) + 6 * 6 + len("tail-no-newline")
    assert out.startswith((LINE + "\n").encode()) and out.endswith(b"end-6\ntail-no-newline")
    assert watch.worst < 0.5, f"a ping took {watch.worst:.2f}s while the whole log streamed"
