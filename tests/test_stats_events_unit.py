"""Unit tests for the event bus (GET /events) and the cgroup stats reader (GET /containers/{id}/stats).

No daemon here: the bus is driven directly, and stats are read from a real cgroup this test creates
(and removes) around a child process it starts (and kills) itself, plus fake cgroup trees for parsing.
"""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from berth.containers import stats
from berth.errors import InvalidParameter
from berth.events import EventBus, compile_filters

# --- events ----------------------------------------------------------------------------------------

CID = "a" * 12 + "b" * 52


def _bus_with_history() -> EventBus:
    bus = EventBus()
    attrs = {"name": "web", "image": "busybox:latest", "com.example.tier": "front"}
    bus.publish("container", "create", CID, attrs)
    bus.publish("container", "start", CID, attrs)
    bus.publish("container", "exec_start: sh -c true", CID, {"name": "web", "image": "busybox:latest"})
    bus.publish("image", "pull", "busybox:latest", {"name": "busybox:latest"})
    bus.publish("volume", "create", "data1", {"driver": "local"})
    bus.publish("network", "connect", "n" * 64, {"name": "bridge", "container": CID})
    return bus


async def _collect(it, n: int | None = None, timeout: float = 2.0) -> list[dict]:  # type: ignore[no-untyped-def]
    out: list[dict] = []

    async def run() -> None:
        async for ev in it:
            out.append(ev)
            if n is not None and len(out) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


def _actions(evs: list[dict]) -> list[str]:
    return [e["Action"] for e in evs]


def test_event_shape_and_legacy_fields() -> None:
    bus = _bus_with_history()
    evs = list(bus._history)
    c = evs[0]
    assert c["Type"] == "container" and c["Action"] == "create" and c["scope"] == "local"
    assert c["Actor"] == {"ID": CID, "Attributes": {"name": "web", "image": "busybox:latest",
                                                    "com.example.tier": "front"}}
    assert c["status"] == "create" and c["id"] == CID and c["from"] == "busybox:latest"
    assert isinstance(c["time"], int) and isinstance(c["timeNano"], int)
    assert c["time"] == c["timeNano"] // 1_000_000_000
    img = evs[3]
    assert img["status"] == "pull" and img["id"] == "busybox:latest" and "from" not in img
    vol = evs[4]
    assert "status" not in vol and "id" not in vol and "from" not in vol


@pytest.mark.parametrize(("filters", "expected"), [
    ({}, ["create", "start", "exec_start: sh -c true", "pull", "create", "connect"]),
    ({"type": ["container"]}, ["create", "start", "exec_start: sh -c true"]),
    ({"type": ["volume", "image"]}, ["pull", "create"]),
    ({"event": ["start"]}, ["start"]),
    ({"event": ["exec_start"]}, ["exec_start: sh -c true"]),
    ({"action": ["create"]}, ["create", "create"]),
    ({"container": ["web"]}, ["create", "start", "exec_start: sh -c true"]),
    ({"container": ["aaaa"]}, ["create", "start", "exec_start: sh -c true"]),
    ({"container": [CID]}, ["create", "start", "exec_start: sh -c true"]),
    ({"container": ["nope"]}, []),
    ({"container": ["web"], "event": ["start"]}, ["start"]),
    ({"image": ["busybox"]}, ["create", "start", "exec_start: sh -c true", "pull"]),
    ({"image": ["busybox:latest"], "type": ["image"]}, ["pull"]),
    ({"image": ["alpine"]}, []),
    ({"label": ["com.example.tier"]}, ["create", "start"]),
    ({"label": ["com.example.tier=front"]}, ["create", "start"]),
    ({"label": ["com.example.tier=back"]}, []),
    ({"volume": ["data1"]}, ["create"]),
    ({"network": ["bridge"]}, ["connect"]),
    ({"scope": ["local"], "type": ["network"]}, ["connect"]),
])
def test_filters(filters: dict[str, list[str]], expected: list[str]) -> None:
    bus = _bus_with_history()
    got = asyncio.run(_collect(bus.subscribe(0, time.time(), filters)))
    assert _actions(got) == expected


def test_unknown_filter_is_rejected_at_subscribe() -> None:
    bus = EventBus()
    with pytest.raises(InvalidParameter, match="invalid filter 'bogus'"):
        bus.subscribe(None, None, {"bogus": ["x"]})
    with pytest.raises(InvalidParameter):
        compile_filters({"event": ["start"], "colour": ["red"]})
    assert bus.subscribers == 0


def test_since_until_replay() -> None:
    bus = EventBus()
    bus.publish("container", "create", CID, {"name": "web"})
    first_ns = bus._history[-1]["timeNano"]
    time.sleep(0.01)
    mid = time.time()
    time.sleep(0.01)
    bus.publish("container", "start", CID, {"name": "web"})
    time.sleep(0.01)
    end = time.time()

    async def main() -> None:
        # until in the past: history only, then the iterator ends by itself.
        assert _actions(await _collect(bus.subscribe(mid, end, {}))) == ["start"]
        assert _actions(await _collect(bus.subscribe(0, end, {}))) == ["create", "start"]
        assert _actions(await _collect(bus.subscribe(0, mid, {}))) == ["create"]
        # Only until (Docker replays everything up to it).
        assert _actions(await _collect(bus.subscribe(None, mid, {}))) == ["create"]
        # since is inclusive.
        assert _actions(await _collect(bus.subscribe(first_ns / 1e9 - 1e-6, mid, {}))) == ["create"]
        assert bus.subscribers == 0

    asyncio.run(main())


def test_history_is_bounded() -> None:
    bus = EventBus(history=5)
    for i in range(12):
        bus.publish("volume", "create", f"v{i}", {})
    got = asyncio.run(_collect(bus.subscribe(0, time.time() + 0.001, {})))
    assert [e["Actor"]["ID"] for e in got] == [f"v{i}" for i in range(7, 12)]


def test_live_events_then_until_stops() -> None:
    bus = EventBus()
    bus.publish("container", "create", CID, {"name": "old"})

    async def main() -> None:
        t0 = time.monotonic()
        sub = bus.subscribe(None, time.time() + 0.5, {"type": ["container"]})
        assert bus.subscribers == 1

        async def produce() -> None:
            await asyncio.sleep(0.05)
            bus.publish("volume", "create", "v", {})  # filtered out
            bus.publish("container", "start", CID, {"name": "web"})
            bus.publish("container", "die", CID, {"name": "web", "exitCode": "0"})

        task = asyncio.create_task(produce())
        got = await _collect(sub)  # ends by itself when until passes
        await task
        # until without since replays all history first, as Docker does.
        assert _actions(got) == ["create", "start", "die"]
        assert got[2]["Actor"]["Attributes"]["exitCode"] == "0"
        assert 0.4 < time.monotonic() - t0 < 1.5
        assert bus.subscribers == 0

    asyncio.run(main())


def test_since_then_live_without_gap() -> None:
    bus = EventBus()
    bus.publish("container", "create", CID, {"name": "web"})

    async def main() -> None:
        sub = bus.subscribe(0, None, {})
        bus.publish("container", "start", CID, {"name": "web"})  # after subscribe, before first read
        got = await _collect(sub, n=2)
        assert _actions(got) == ["create", "start"]
        await sub.aclose()

    asyncio.run(main())


def test_close_removes_subscriber() -> None:
    bus = EventBus()
    bus.publish("daemon", "old", "d1", {})

    async def main() -> None:
        sub = bus.subscribe(None, None, {})  # neither since nor until: live events only
        assert bus.subscribers == 1
        reader = asyncio.create_task(_collect(sub, n=1, timeout=5))
        await asyncio.sleep(0.01)
        bus.publish("daemon", "reload", "d1", {"name": "berth"})
        assert _actions(await reader) == ["reload"]
        await sub.aclose()
        assert bus.subscribers == 0
        bus.publish("daemon", "reload", "d1", {})  # nobody listening: must not fail
        # A closed iterator stays finished.
        assert await _collect(sub) == []

        # Closed before it was ever iterated.
        sub2 = bus.subscribe(None, None, {})
        assert bus.subscribers == 1
        await sub2.aclose()
        assert bus.subscribers == 0

        # Dropped without aclose (e.g. the consumer broke out of the loop): gone once collected.
        sub3 = bus.subscribe(None, None, {})
        assert bus.subscribers == 1
        del sub3
        gc.collect()
        assert bus.subscribers == 0

        # A cancelled reader (client went away) followed by aclose.
        sub4 = bus.subscribe(None, None, {})
        t = asyncio.create_task(_collect(sub4, timeout=5))
        await asyncio.sleep(0.01)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        await sub4.aclose()
        assert bus.subscribers == 0

    asyncio.run(main())


def test_slow_subscriber_does_not_block_publisher() -> None:
    bus = EventBus()

    async def main() -> None:
        sub = bus.subscribe(None, None, {})
        t0 = time.monotonic()
        for i in range(5000):  # more than the queue holds; nobody reads
            bus.publish("volume", "create", f"v{i}", {})
        assert time.monotonic() - t0 < 2
        got = await _collect(sub, n=3)
        assert [e["Actor"]["ID"] for e in got] == ["v0", "v1", "v2"]
        await sub.aclose()

    asyncio.run(main())


def test_publish_from_worker_thread() -> None:
    bus = EventBus()

    async def main() -> None:
        sub = bus.subscribe(None, None, {"type": ["container"]})
        await asyncio.to_thread(bus.publish, "container", "oom", CID, {"name": "web"})
        got = await _collect(sub, n=1)
        assert _actions(got) == ["oom"]
        await sub.aclose()

    asyncio.run(main())


# --- stats: parsing against fake cgroup trees --------------------------------------------------------

def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


@pytest.fixture
def fake_root(tmp_path, monkeypatch) -> Iterator[str]:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(stats, "CGROUP_ROOT", str(tmp_path))
    stats._v1_mounts.cache_clear()
    yield str(tmp_path)
    stats._v1_mounts.cache_clear()


def test_v1_parsing(fake_root: str) -> None:
    rel = "/berth/c1"
    mem = os.path.join(fake_root, "memory", "berth", "c1")
    _write(os.path.join(mem, "cgroup.procs"), "42\n")
    _write(os.path.join(mem, "memory.usage_in_bytes"), "1048576\n")
    _write(os.path.join(mem, "memory.max_usage_in_bytes"), "2097152\n")
    _write(os.path.join(mem, "memory.limit_in_bytes"), "9223372036854771712\n")
    _write(os.path.join(mem, "memory.stat"), "cache 4096\nrss 8192\ntotal_inactive_file 4096\n")
    # A joint cpu,cpuacct mount, as most distributions have it.
    acct = os.path.join(fake_root, "cpu,cpuacct", "berth", "c1")
    _write(os.path.join(acct, "cpuacct.usage"), "5000000\n")
    _write(os.path.join(acct, "cpuacct.usage_percpu"), "3000000 2000000 \n")
    _write(os.path.join(acct, "cpuacct.stat"), "user 3\nsystem 1\n")
    _write(os.path.join(acct, "cpu.stat"), "nr_periods 10\nnr_throttled 2\nthrottled_time 777\n")
    pids = os.path.join(fake_root, "pids", "berth", "c1")
    _write(os.path.join(pids, "pids.current"), "3\n")
    _write(os.path.join(pids, "pids.max"), "max\n")
    blk = os.path.join(fake_root, "blkio", "berth", "c1")
    _write(os.path.join(blk, "blkio.io_service_bytes_recursive"), "Total 0\n")
    _write(os.path.join(blk, "blkio.throttle.io_service_bytes_recursive"),
           "8:0 Read 100\n8:0 Write 200\n8:0 Total 300\nTotal 300\n")

    assert stats.cgroup_exists(rel)
    s = stats.read_stats(rel, 0, "web", "c1", None)
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    cu = s["cpu_stats"]["cpu_usage"]
    assert cu == {"total_usage": 5000000, "percpu_usage": [3000000, 2000000],
                  "usage_in_kernelmode": 1 * tick, "usage_in_usermode": 3 * tick}
    assert s["cpu_stats"]["throttling_data"] == {"periods": 10, "throttled_periods": 2, "throttled_time": 777}
    assert s["cpu_stats"]["system_cpu_usage"] > 0 and s["cpu_stats"]["online_cpus"] >= 1
    m = s["memory_stats"]
    assert m["usage"] == 1048576 and m["max_usage"] == 2097152 and m["stats"]["rss"] == 8192
    assert m["limit"] == stats.host_memory() > 0  # unlimited → host memory
    assert s["pids_stats"] == {"current": 3, "limit": 0}
    assert s["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 100}, {"major": 8, "minor": 0, "op": "Write", "value": 200},
        {"major": 8, "minor": 0, "op": "Total", "value": 300}]
    assert s["name"] == "/web" and s["id"] == "c1" and s["preread"] == stats.ZERO_TIME

    # A real limit is reported as is; the next sample carries this one as "pre".
    _write(os.path.join(mem, "memory.limit_in_bytes"), "67108864\n")
    s2 = stats.read_stats(rel, 0, "web", "c1", s)
    assert s2["memory_stats"]["limit"] == 67108864
    assert s2["preread"] == s["read"] and s2["precpu_stats"] == s["cpu_stats"]


def test_v2_parsing(fake_root: str) -> None:
    _write(os.path.join(fake_root, "cgroup.controllers"), "cpu io memory pids\n")
    d = os.path.join(fake_root, "berth", "c2")
    _write(os.path.join(d, "cgroup.procs"), "42\n")
    _write(os.path.join(d, "memory.current"), "3000000\n")
    _write(os.path.join(d, "memory.max"), "max\n")
    _write(os.path.join(d, "memory.stat"), "anon 1000\nfile 2000\ninactive_file 500\n")
    _write(os.path.join(d, "cpu.stat"), "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"
                                        "nr_periods 4\nnr_throttled 1\nthrottled_usec 20\n")
    _write(os.path.join(d, "pids.current"), "2\n")
    _write(os.path.join(d, "pids.max"), "100\n")
    _write(os.path.join(d, "io.stat"), "8:16 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n")

    s = stats.read_stats("/berth/c2", 0, "/db", "c2", None)
    assert s["cpu_stats"]["cpu_usage"] == {"total_usage": 1500000, "usage_in_kernelmode": 500000,
                                           "usage_in_usermode": 1000000}
    assert s["cpu_stats"]["throttling_data"] == {"periods": 4, "throttled_periods": 1, "throttled_time": 20000}
    assert s["memory_stats"] == {"usage": 3000000, "limit": stats.host_memory(),
                                 "stats": {"anon": 1000, "file": 2000, "inactive_file": 500}}
    assert s["pids_stats"] == {"current": 2, "limit": 100}
    assert s["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 16, "op": "read", "value": 4096}, {"major": 8, "minor": 16, "op": "write", "value": 8192}]
    assert s["name"] == "/db"


def test_missing_cgroup_reads_as_zeros(fake_root: str) -> None:
    assert not stats.cgroup_exists("/berth/gone")
    s = stats.read_stats("/berth/gone", 0, "x", "gone", None)
    assert s["memory_stats"]["usage"] == 0 and s["memory_stats"]["stats"]["total_inactive_file"] == 0
    assert s["cpu_stats"]["cpu_usage"]["total_usage"] == 0 and s["pids_stats"]["current"] == 0
    assert s["blkio_stats"]["io_service_bytes_recursive"] is None


def test_rfc3339nano() -> None:
    assert stats.rfc3339nano(0) == "1970-01-01T00:00:00Z"
    assert stats.rfc3339nano(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
    assert stats.rfc3339nano(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000000001Z"


# --- stats: a real cgroup around a real process ----------------------------------------------------------

_CHILD = ("import sys, time\n"
          "sys.stdin.readline()\n"  # wait until the test has moved us into the cgroup
          "buf = bytearray(16 << 20)\n"  # then allocate: charged to the new memory cgroup
          "sum(range(200000))\n"
          "print('ready', flush=True)\n"
          "time.sleep(30)\n")


def _docker_cli_view(s: dict) -> tuple[float, float]:
    """What `docker stats` computes from one sample: CPU % and memory used without page cache."""
    cpu, pre = s["cpu_stats"], s["precpu_stats"]
    cpu_delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
    sys_delta = cpu["system_cpu_usage"] - pre["system_cpu_usage"]
    pct = cpu_delta / sys_delta * cpu["online_cpus"] * 100 if sys_delta > 0 and cpu_delta > 0 else 0.0
    mem = s["memory_stats"]
    inactive = mem["stats"]["total_inactive_file"] if "total_inactive_file" in mem["stats"] \
        else mem["stats"]["inactive_file"]
    return pct, mem["usage"] - inactive if inactive < mem["usage"] else mem["usage"]


def test_real_cgroup() -> None:
    name = "berth-stats-test-" + secrets.token_hex(4)
    rel = "/" + name
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    if v2:
        dirs = [os.path.join("/sys/fs/cgroup", name)]
    else:
        dirs = [os.path.join("/sys/fs/cgroup", c, name) for c in ("memory", "cpu", "cpuacct", "pids", "blkio")
                if os.path.isfile(os.path.join("/sys/fs/cgroup", c, "cgroup.procs"))]
    if not dirs or (not v2 and not dirs[0].startswith("/sys/fs/cgroup/memory/")):
        pytest.skip("no memory cgroup hierarchy")
    made: list[str] = []
    child: subprocess.Popen | None = None
    try:
        for d in dirs:
            try:
                os.mkdir(d)
            except OSError as e:
                pytest.skip(f"cgroup hierarchy not writable: {e}")
            made.append(d)
        if v2 and not os.path.exists(os.path.join(dirs[0], "memory.current")):
            pytest.skip("memory controller not enabled in the v2 root")
        assert stats.cgroup_exists(rel)

        child = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
        for d in made:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(child.pid))
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "ready"

        first = stats.read_stats(rel, child.pid, "stats-test", "cid123", None)
        t0 = time.perf_counter()
        s = stats.read_stats(rel, child.pid, "stats-test", "cid123", first)
        assert time.perf_counter() - t0 < 0.05  # just file reads

        for key in ("read", "preread", "pids_stats", "blkio_stats", "num_procs", "storage_stats", "cpu_stats",
                    "precpu_stats", "memory_stats", "name", "id"):
            assert key in s, key
        assert s["preread"] == first["read"] and s["precpu_stats"] == first["cpu_stats"]
        mem = s["memory_stats"]
        assert mem["usage"] >= 16 << 20, mem["usage"]
        assert 0 < mem["limit"] <= stats.host_memory()
        assert ("inactive_file" if v2 else "total_inactive_file") in mem["stats"]
        assert s["pids_stats"]["current"] >= 1
        cpu = s["cpu_stats"]
        assert cpu["cpu_usage"]["total_usage"] >= 0
        assert cpu["cpu_usage"]["total_usage"] >= first["cpu_stats"]["cpu_usage"]["total_usage"]
        assert cpu["system_cpu_usage"] > 0 and cpu["online_cpus"] >= 1
        if not v2:
            assert len(cpu["cpu_usage"]["percpu_usage"]) >= 1
            assert "max_usage" in mem
        for k in ("usage_in_kernelmode", "usage_in_usermode"):
            assert k in cpu["cpu_usage"]
        pct, used = _docker_cli_view(s)
        assert pct >= 0 and used > 0
        assert s["name"] == "/stats-test" and s["id"] == "cid123"
    finally:
        if child is not None:
            _kill_child(child)
        for d in reversed(made):
            for _ in range(50):  # the cgroup empties a moment after its last task is reaped
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)

    # Once removed, the same cgroup reads as zeros.
    assert not stats.cgroup_exists(rel)
    gone = stats.read_stats(rel, 0, "stats-test", "cid123", None)
    assert gone["memory_stats"]["usage"] == 0 and gone["pids_stats"]["current"] == 0


def _kill_child(child: subprocess.Popen) -> None:
    try:
        os.kill(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait(timeout=10)
    for f in (child.stdin, child.stdout):
        if f is not None:
            f.close()
