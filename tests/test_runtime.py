"""The runtime interface (berth.runtime.interface), run against each implementation.

These drive real containers (crun under the implementation's monitor) on a busybox rootfs,
through the ``Runtime`` protocol alone: create, attach, start, states, pause/resume, kill,
watch, exit status, exec (piped, TTY, back-pressure), resize, reap. A new monitor joins
``berth.runtime.IMPLEMENTATIONS`` and passes this module.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import shutil
import signal
import tarfile
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import pytest

from berth.runtime import IMPLEMENTATIONS
from berth.runtime import spec as ocispec
from berth.runtime.interface import STDERR, STDOUT, Bundle, Runtime
from berth.tools import mkbusybox

pytestmark = pytest.mark.skipif(not shutil.which("crun") or not shutil.which("conmon"), reason="needs crun and conmon")


@pytest.fixture(scope="module")
def rootfs() -> Iterator[str]:
    root = tempfile.mkdtemp(prefix="berth-rt-rootfs-", dir="/var/tmp")
    with tarfile.open(fileobj=io.BytesIO(mkbusybox.build_layer("/bin/busybox", 0))) as tf:
        tf.extractall(root, filter="tar")
    yield root
    shutil.rmtree(root, ignore_errors=True)


class Box:
    """Bundles for one test, each on its own copy-free view of the rootfs; reaped at the end."""

    def __init__(self, rt: Runtime, root: str, rootfs: str) -> None:
        self.rt = rt
        self.root = root
        self.rootfs = rootfs
        self.bundles: list[Bundle] = []

    def bundle(self, args: list[str], *, tty: bool = False, stdin: bool = False) -> Bundle:
        cid = secrets.token_hex(32)
        d = os.path.join(self.root, "c", cid)
        os.makedirs(d)
        spec = ocispec.build_spec(rootfs=self.rootfs, args=args, env=[], cwd="/", user="", hostname="rt",
                                  terminal=tty, stdin=stdin, cgroup_path=f"/berth-rt-test/{cid}", etc_files={})
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(spec, f)
        b = Bundle(id=cid, dir=d, name="rt-" + cid[:8], log=os.path.join(d, "container.log"))
        self.bundles.append(b)
        return b

    async def exited(self, b: Bundle, monitor_pid: int, timeout: float = 10) -> None:
        ended = asyncio.Event()
        if self.rt.watch(b, monitor_pid, ended.set):
            await asyncio.wait_for(ended.wait(), timeout)


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def runtime_impl(request: pytest.FixtureRequest) -> Callable[[str], Runtime]:
    """A factory (exec root -> Runtime) for each implementation of the interface."""
    return lambda exec_root: IMPLEMENTATIONS[request.param](exec_root, "crun")


@pytest.fixture
def box(runtime_impl: Callable[[str], Runtime], rootfs: str) -> Iterator[Box]:
    root = tempfile.mkdtemp(prefix="berth-rt-", dir="/var/tmp")
    bx = Box(runtime_impl(os.path.join(root, "run")), root, rootfs)
    yield bx

    async def reap_all() -> None:
        for b in bx.bundles:
            await bx.rt.reap(b)

    asyncio.run(reap_all())
    shutil.rmtree(root, ignore_errors=True)


def gone(pid: int) -> bool:
    """No such process, or only its zombie (the monitor's reaper may not have collected it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except FileNotFoundError:
        return True


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


async def collect(chunks: AsyncIterator[tuple[int, bytes]]) -> dict[int, bytes]:
    out = {STDOUT: b"", STDERR: b""}
    async for stream, data in chunks:
        out[stream] += data
    return out


def test_run_attach_and_exit(box: Box) -> None:
    async def main() -> None:
        rt = box.rt
        b = box.bundle(["sh", "-c", "read x; echo out $x; echo err >&2; exit 3"], stdin=True)
        created = await rt.create(b, terminal=False, stdin=True)
        assert created.pid >= 0 and created.monitor_pid > 0  # berth: the pid comes from start
        if created.pid:  # conmon has the runtime create it now; berth-monitor runs it at start
            assert (await rt.states())[b.id] == "created"
        att = rt.attach(b)  # before start: nothing is missed
        pid = await rt.start(b) or created.pid
        assert pid > 0
        await att.write_stdin(b"hi\n")
        got = await collect(att.output())
        att.close()
        assert got == {STDOUT: b"out hi\n", STDERR: b"err\n"}
        await box.exited(b, created.monitor_pid)
        st = rt.exit_status(b)
        assert st.code == 3 and not st.oom_killed and st.at is not None
        assert rt.live(b, created.monitor_pid) is None
        with open(b.log) as f:
            lines = [ln.split(" ", 3)[1:] for ln in f.read().splitlines()]
        assert ["stdout", "F", "out hi"] in lines and ["stderr", "F", "err"] in lines
        await rt.delete(b)
        assert b.id not in await rt.states()
        rt.clear_exit(b)
        assert rt.exit_status(b).code is None

    run(main())


def test_states_pause_resume_kill(box: Box) -> None:
    async def main() -> None:
        rt = box.rt
        b = box.bundle(["sleep", "100"])
        created = await rt.create(b, terminal=False, stdin=False)
        pid = await rt.start(b) or created.pid
        assert pid > 0
        assert (await rt.states())[b.id] == "running"
        live = rt.live(b, created.monitor_pid)
        assert live is not None and (live.pid, live.monitor_pid) == (pid, created.monitor_pid)
        await rt.pause(b)
        assert (await rt.states())[b.id] == "paused"
        await rt.resume(b)
        assert (await rt.states())[b.id] == "running"
        rt.kill(pid, signal.SIGKILL)
        await box.exited(b, created.monitor_pid)
        assert rt.exit_status(b).code == 128 + signal.SIGKILL
        await box.exited(b, created.monitor_pid, timeout=1)  # watching an ended container: at once
        assert gone(pid) and gone(created.monitor_pid)

    run(main())


def test_reap_leaves_nothing(box: Box) -> None:
    async def main() -> None:
        rt = box.rt
        b = box.bundle(["sleep", "100"])
        created = await rt.create(b, terminal=False, stdin=False)
        pid = await rt.start(b) or created.pid
        assert pid > 0
        await rt.reap(b, created.monitor_pid)  # as restore does with a crash's leftovers
        await box.exited(b, created.monitor_pid)
        assert b.id not in await rt.states()
        assert rt.live(b, created.monitor_pid) is None
        assert gone(pid) and gone(created.monitor_pid)

    run(main())


def test_exec_piped_and_tty(box: Box) -> None:
    async def main() -> None:
        rt = box.rt
        b = box.bundle(["sleep", "100"])
        created = await rt.create(b, terminal=False, stdin=False)
        pid = await rt.start(b) or created.pid
        assert pid > 0
        process = {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["sh", "-c", "tr a-z A-Z; exit 5"],
                   "env": ["PATH=/bin"], "cwd": "/"}
        ex = await rt.exec(b, secrets.token_hex(32), process, stdin=True, attach=True)
        await ex.write_stdin(b"shout\n")
        ex.close_stdin()
        got = await collect(ex.output())
        assert got == {STDOUT: b"SHOUT\n", STDERR: b""}
        assert await ex.wait() == 5
        assert ex.pid > 0 and ex.pid != pid  # the exec'd process's own pid, known by the end

        tty = {**process, "terminal": True, "args": ["sh", "-c", "sleep 0.3; tty; stty size"]}
        ex = await rt.exec(b, secrets.token_hex(32), tty, stdin=False, attach=True)
        ex.resize(33, 101)
        out = (await collect(ex.output()))[STDOUT].decode()
        assert await ex.wait() == 0
        assert out.startswith("/dev/pts/") and "33 101" in out
        assert [n for n in os.listdir(b.dir) if n.startswith("exec-") or n.endswith(".sock")] == []  # none left

    run(main())


def test_exec_output_is_back_pressured(box: Box) -> None:
    """A reader that falls behind holds the process back instead of berthd buffering its output."""

    async def main() -> None:
        rt = box.rt
        b = box.bundle(["sleep", "100"])
        created = await rt.create(b, terminal=False, stdin=False)
        pid = await rt.start(b) or created.pid
        assert pid > 0
        size = 32 << 20
        process = {"terminal": False, "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"], "cwd": "/",
                   "args": ["sh", "-c", f"head -c {size} /dev/zero; touch /tmp/done"]}
        ex = await rt.exec(b, secrets.token_hex(32), process, stdin=False, attach=True)
        await asyncio.sleep(1.5)  # nobody reads: the process must be stuck writing
        done = os.path.join(box.rootfs, "tmp", "done")
        assert not os.path.exists(done)
        assert ex.pid > 0
        total = 0
        async for _stream, data in ex.output():
            total += len(data)
        assert total == size
        assert await ex.wait() == 0 and os.path.exists(done)
        os.unlink(done)

        # a consumer that goes away discards: the process runs to its end without a reader
        ex = await rt.exec(b, secrets.token_hex(32), process, stdin=False, attach=True)
        ex.discard_output()
        assert await asyncio.wait_for(ex.wait(), 30) == 0 and os.path.exists(done)
        os.unlink(done)

    run(main())


def test_resize_container_terminal(box: Box) -> None:
    async def main() -> None:
        rt = box.rt
        b = box.bundle(["sh", "-c", "for i in $(seq 100); do [ \"$(stty size)\" = '40 120' ] && break; "
                                    "sleep 0.05; done; stty size"], tty=True)
        created = await rt.create(b, terminal=True, stdin=False)
        att = rt.attach(b)
        pid = await rt.start(b) or created.pid
        assert pid > 0
        rt.resize(b, 40, 120)
        got = await collect(att.output())
        att.close()
        assert b"40 120" in got[STDOUT]
        await box.exited(b, created.monitor_pid)

    run(main())

