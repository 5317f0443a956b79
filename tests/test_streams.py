"""Long-lived streams must not starve the daemon: many ``docker logs -f`` followers and a running
``docker pull`` leave ordinary requests answering promptly."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.conftest import DOCKER_CLI, Daemon
from tests.test_registry_e2e import Reg

FOLLOWERS = 20
BIG = 96 << 20  # random bytes in the pulled image's top layer: the pull takes a while


def _timed(d: Daemon, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    t = time.monotonic()
    r = d.cli(*args, timeout=30)
    return time.monotonic() - t, r


def test_followers_and_pull_leave_ps_prompt(daemon: Daemon) -> None:
    if DOCKER_CLI is None:
        pytest.skip("the docker CLI is not installed")
    reg = Reg(None)
    ref = f"{reg.addr}/streams/big:1"
    env = dict(os.environ, DOCKER_HOST=daemon.host)
    env.pop("DOCKER_CONTEXT", None)
    followers: list[subprocess.Popen[bytes]] = []
    pull: subprocess.Popen[bytes] | None = None
    try:
        # an image worth pulling, in Berth's own registry on loopback
        daemon.cli("run", "--name", "streams-big", "busybox", "sh", "-c", f"head -c {BIG} /dev/urandom > /big")
        daemon.cli("commit", "streams-big", ref)
        daemon.cli("rm", "streams-big")
        daemon.cli("push", ref, timeout=300)
        daemon.cli("rmi", ref)
        daemon.cli("run", "-d", "--name", "streams-talker", "busybox", "sh", "-c",
                   "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.05; done")
        daemon.cli("run", "--name", "streams-quiet", "busybox", "echo", "quiet")

        for _ in range(FOLLOWERS):
            followers.append(subprocess.Popen([DOCKER_CLI, "logs", "-f", "streams-talker"], env=env,
                                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
        time.sleep(1)  # all followers connected and tailing
        pull = subprocess.Popen([DOCKER_CLI, "pull", ref], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.3)  # the pull is under way

        during: list[float] = []  # `docker ps` times taken while the pull was still running
        worst_logs = 0.0
        while pull.poll() is None and len(during) < 10:
            took, r = _timed(daemon, "ps")
            if pull.poll() is None:
                during.append(took)
            assert b"streams-talker" in r.stdout
            took, r = _timed(daemon, "logs", "streams-quiet")  # a log read shares the followers' readers
            assert r.stdout == b"quiet\n"
            worst_logs = max(worst_logs, took)
        out, err = pull.communicate(timeout=120)  # a starved pull would stall here
        assert pull.returncode == 0, err
        assert during, "the pull finished before `docker ps` could be timed; make the image bigger"
        assert max(during) < 1.0, f"docker ps took {max(during):.2f}s during the pull (all: {during})"
        assert worst_logs < 1.0, f"docker logs took {worst_logs:.2f}s during the pull"
        for f in followers:  # every follower was streaming all along
            assert f.poll() is None
            f.terminate()
            got, _ = f.communicate(timeout=10)
            assert got.count(b"line ") >= 20, got[-200:]
    finally:
        for f in followers:
            if f.poll() is None:
                f.kill()
                f.wait()
        if pull is not None and pull.poll() is None:
            pull.kill()
            pull.wait()
        for name in ("streams-big", "streams-talker", "streams-quiet"):
            daemon.cli("rm", "-f", name, check=False)
        daemon.cli("rmi", "-f", ref, check=False)
        reg.close()


def test_thread_stream_back_pressure_errors_and_close() -> None:
    """stream_from_thread: chunks arrive in order, a producer's error reaches the consumer, and
    closing the stream early stops the producer (it sees a broken pipe) before aclose returns."""
    import asyncio
    import threading

    from berth.threadstream import FLUSH, stream_from_thread

    seen: dict[str, object] = {}

    def endless(out: object) -> None:
        seen["thread"] = threading.current_thread().name
        try:
            while True:
                out.write(b"x" * FLUSH)  # type: ignore[attr-defined]
        except BrokenPipeError:
            seen["stopped"] = True
            raise

    def failing(out: object) -> None:
        out.write(b"partial")  # type: ignore[attr-defined]
        raise ValueError("disk on fire")

    async def main() -> None:
        gen = stream_from_thread(lambda out: [out.write(bytes([i]) * 10) for i in range(3)] and None)
        assert b"".join([c async for c in gen]) == b"\x00" * 10 + b"\x01" * 10 + b"\x02" * 10
        gen = stream_from_thread(failing)
        with pytest.raises(ValueError, match="disk on fire"):
            async for _ in gen:
                pass
        gen = stream_from_thread(endless, "berth-test")
        assert len(await anext(gen)) == FLUSH
        await gen.aclose()
        assert seen.get("stopped") is True
        assert str(seen["thread"]).startswith("berth-test-")
        # no thread of the loop's default pool was used for any of it
        assert not any(t.name.startswith("asyncio_") for t in threading.enumerate())

    asyncio.run(main())
