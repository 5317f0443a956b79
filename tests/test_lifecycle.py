"""rename, top, log size caps, container prune."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time

import docker
import pytest

from tests.conftest import Daemon


@pytest.fixture(scope="module")
def monitor(each_monitor: str) -> str:
    """This module's daemon runs once with berth-monitor and once with conmon."""
    return each_monitor


def test_rename(daemon: Daemon, client: docker.DockerClient) -> None:
    daemon.cli("create", "--name", "before", "busybox", "true")
    daemon.cli("create", "--name", "taken", "busybox", "true")
    daemon.cli("rename", "before", "after")
    assert client.api.inspect_container("after")["Name"] == "/after"
    with pytest.raises(docker.errors.NotFound):
        client.api.inspect_container("before")
    r = daemon.cli("rename", "after", "taken", check=False)
    assert r.returncode != 0 and b"is already in use" in r.stderr
    r = daemon.cli("rename", "after", "bad name", check=False)
    assert r.returncode != 0 and b"Invalid container name" in r.stderr
    daemon.cli("rm", "after", "taken")


def test_top(daemon: Daemon) -> None:
    daemon.cli("run", "-d", "--name", "topped", "busybox", "sh", "-c", "sleep 100 & exec sleep 200")
    try:
        time.sleep(0.2)
        out = daemon.cli("top", "topped").stdout.decode().splitlines()
        assert out[0].split()[:3] == ["UID", "PID", "PPID"]
        cmds = sorted(line.split(None, 7)[-1] for line in out[1:])
        assert cmds == ["sleep 100", "sleep 200"]
        aux = daemon.client().api.top("topped", ps_args="aux")
        assert "%CPU" in aux["Titles"] and len(aux["Processes"]) == 2
    finally:
        daemon.cli("rm", "-f", "topped")
    r = daemon.cli("create", "--name", "idle", "busybox", "true")
    r = daemon.cli("top", "idle", check=False)
    assert r.returncode != 0 and b"is not running" in r.stderr
    daemon.cli("rm", "idle")


def test_log_max_size_caps_the_file(daemon: Daemon, client: docker.DockerClient) -> None:
    ct = client.containers.run("busybox", ["sh", "-c", "i=0; while [ $i -lt 5000 ]; do "
                                           "echo line-$i-padding-padding-padding; i=$((i+1)); done"],
                               detach=True, log_config={"Type": "json-file", "Config": {"max-size": "20k"}})
    ct.wait()
    path = client.api.inspect_container(ct.id)["LogPath"]
    assert os.path.getsize(path) <= 20_000 + 4096
    tail = ct.logs(tail=1)
    assert tail == b"line-4999-padding-padding-padding\n"
    ct.remove()
    with pytest.raises(docker.errors.APIError) as e:
        client.api.create_container("busybox", ["true"], host_config={"LogConfig": {"Type": "syslog"}})
    assert e.value.status_code == 400


def test_container_prune(client: docker.DockerClient) -> None:
    stopped = client.containers.run("busybox", ["true"], detach=True)
    stopped.wait()
    running = client.containers.run("busybox", ["sleep", "60"], detach=True)
    try:
        out = client.api.prune_containers()
        assert stopped.id in out["ContainersDeleted"] and running.id not in out["ContainersDeleted"]
        running.reload()
        assert running.status == "running"
    finally:
        running.remove(force=True)


def test_healthcheck_status_and_log(daemon: Daemon, client: docker.DockerClient) -> None:
    daemon.cli("run", "-d", "--name", "healthy", "--health-cmd", "test -f /tmp/ok", "--health-interval", "200ms",
               "--health-retries", "2", "busybox", "sh", "-c", "sleep 1; touch /tmp/ok; sleep 60")
    daemon.cli("run", "-d", "--name", "sick", "--health-cmd", "echo nope; exit 1", "--health-interval", "200ms",
               "--health-retries", "2", "busybox", "sleep", "60")
    try:
        def status(name: str) -> str:
            return client.api.inspect_container(name)["State"]["Health"]["Status"]

        assert status("healthy") == "starting"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (status("healthy") != "healthy" or status("sick") != "unhealthy"):
            time.sleep(0.2)
        assert status("healthy") == "healthy"
        sick = client.api.inspect_container("sick")["State"]["Health"]
        assert sick["Status"] == "unhealthy" and sick["FailingStreak"] >= 2
        assert sick["Log"][-1]["ExitCode"] == 1 and sick["Log"][-1]["Output"] == "nope\n"
        assert "(healthy)" in daemon.cli("ps", "--filter", "name=healthy", "--format", "{{.Status}}").stdout.decode()
        assert client.api.inspect_container("sick")["ExecIDs"] is None  # probes are not exec sessions
    finally:
        daemon.cli("rm", "-f", "healthy", "sick")


def test_stats_no_stream_prints_numbers(daemon: Daemon, client: docker.DockerClient) -> None:
    ct = client.containers.run("busybox", ["sh", "-c", "x=$(head -c 4000000 /dev/zero | tr '\\0' a); "
                                           "while true; do :; done"], detach=True)
    try:
        time.sleep(0.5)
        out = daemon.cli("stats", "--no-stream", "--format", "{{.CPUPerc}} {{.MemUsage}} {{.PIDs}}", ct.id)
        cpu, mem, *_rest, pids = out.stdout.decode().split()
        assert float(cpu.rstrip("%")) > 10  # a busy loop
        assert not mem.startswith("0B") and int(pids) >= 1
        one = client.api.stats(ct.id, stream=False, one_shot=True)
        assert one["memory_stats"]["usage"] > 0 and one["pids_stats"]["current"] >= 1
        assert one["cpu_stats"]["cpu_usage"]["total_usage"] > 0 and one["name"] == "/" + ct.name
        stream = client.api.stats(ct.id, stream=True, decode=True)
        first, second = next(stream), next(stream)
        assert second["precpu_stats"]["cpu_usage"]["total_usage"] == first["cpu_stats"]["cpu_usage"]["total_usage"]
    finally:
        ct.remove(force=True)


def test_events_stream_and_filters(daemon: Daemon, client: docker.DockerClient) -> None:
    since = time.time()
    ct = client.containers.run("busybox", ["sh", "-c", "exit 2"], detach=True, name="evented",
                               labels={"watch": "me"})
    ct.wait()
    ct.remove()
    client.volumes.create("v-events").remove()
    until = time.time() + 0.5
    evs = list(client.events(since=since, until=until, decode=True, filters={"container": "evented"}))
    assert [e["Action"] for e in evs] == ["create", "start", "die", "destroy"]
    die = evs[2]
    assert die["Actor"]["Attributes"]["exitCode"] == "2" and die["Actor"]["Attributes"]["watch"] == "me"
    assert die["Type"] == "container" and die["status"] == "die" and die["from"] == "busybox"
    vols = list(client.events(since=since, until=until, decode=True, filters={"type": "volume"}))
    assert [(e["Action"], e["Actor"]["ID"]) for e in vols] == [("create", "v-events"), ("destroy", "v-events")]
    labelled = list(client.events(since=since, until=until, decode=True, filters={"label": "watch=me",
                                                                                   "event": "die"}))
    assert len(labelled) == 1
    r = daemon.cli("events", "--since", str(int(since)), "--until", str(int(until) + 1), "--filter",
                   "type=container", "--filter", "event=destroy", "--format", "{{.Actor.Attributes.name}}")
    assert "evented" in r.stdout.decode().split()  # (whole seconds: earlier tests' events may show too)
    r = client.api._get(client.api._url("/events"), params={"until": str(until), "filters": '{"bogus":["x"]}'})
    assert r.status_code == 400 and r.json()["message"] == "invalid filter 'bogus'"


def _pin(path: str, on: bool) -> None:
    """An immutable file (chattr +i): its directory cannot be removed until it is unpinned."""
    if on:
        open(path, "w").close()
    subprocess.run(["chattr", "+i" if on else "-i", path], check=True)


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr to make a removal fail")
def test_failed_removal_leaves_a_dead_container_that_prune_passes_over(daemon: Daemon,
                                                                       client: docker.DockerClient) -> None:
    """As Docker: a container whose files cannot be removed is left Dead with the reason; rm can be
    tried again, start is refused, and a prune reports the others it removed instead of failing."""
    stuck = client.containers.run("busybox", ["true"], detach=True)
    other = client.containers.run("busybox", ["true"], detach=True)
    for ct in (stuck, other):
        ct.wait()
    pin = os.path.join(daemon.exec_root, "c", stuck.id, "pin")
    try:
        _pin(pin, True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("the file system takes no immutable flag here")
    try:
        r = daemon.cli("rm", stuck.id, check=False)
        assert r.returncode == 1 and b"unable to remove filesystem for " + stuck.id.encode() in r.stderr, r.stderr
        state = client.api.inspect_container(stuck.id)["State"]
        assert (state["Status"], state["Dead"]) == ("dead", True)
        r = daemon.cli("start", stuck.id, check=False)
        assert r.returncode != 0 and b"marked for removal" in r.stderr, r.stderr
        out = client.api.prune_containers()
        assert other.id in out["ContainersDeleted"] and stuck.id not in out["ContainersDeleted"], out
        assert client.api.inspect_container(stuck.id)["State"]["Status"] == "dead"
    finally:
        _pin(pin, False)
    daemon.cli("rm", stuck.id)
    assert [c["Id"] for c in client.api.containers(all=True) if c["Id"] in (stuck.id, other.id)] == []


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr to make a removal fail")
def test_dead_container_is_removed_when_berthd_starts_again(fresh_daemon: Daemon) -> None:
    """As Docker's restore: a container left dead by a failed removal is removed at the next start,
    once what blocked it is gone; one still blocked stays dead, and berthd starts anyway."""
    client = fresh_daemon.client()
    gone, kept = (client.containers.run("busybox", ["true"], detach=True) for _ in range(2))
    pins = [os.path.join(fresh_daemon.exec_root, "c", ct.id, "pin") for ct in (gone, kept)]
    for ct, pin in zip((gone, kept), pins, strict=True):
        ct.wait()
        try:
            _pin(pin, True)
        except (OSError, subprocess.CalledProcessError):
            pytest.skip("the file system takes no immutable flag here")
    try:
        for ct in (gone, kept):
            assert fresh_daemon.cli("rm", ct.id, check=False).returncode == 1
        fresh_daemon.stop()
        _pin(pins[0], False)
        fresh_daemon.start()
        client = fresh_daemon.client()
        ids = {c["Id"]: c["State"] for c in client.api.containers(all=True)}
        assert gone.id not in ids and ids.get(kept.id) == "dead", ids
    finally:
        for pin in pins:  # also when the test failed part-way: the daemon root must go
            with contextlib.suppress(OSError, subprocess.CalledProcessError):
                _pin(pin, False)
    fresh_daemon.cli("rm", kept.id)
