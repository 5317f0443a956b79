"""Engine API behaviours real clients rely on (issue 11), through the docker CLI and the Docker SDK:
container update, per-container runtimes, log drivers, docker cp into volumes, commit with pause,
load errors in the stream, prune answers."""

from __future__ import annotations

import os
import subprocess
import time

import docker
import pytest

from tests.conftest import Daemon


def _cgroup(d: Daemon, name: str, path: str) -> int:
    return int(d.cli("exec", name, "cat", f"/sys/fs/cgroup/{path}").stdout.strip())


# -- POST /containers/{id}/update ------------------------------------------------------------------

def test_update_applies_live_and_is_kept_for_later_starts(daemon: Daemon) -> None:
    d = daemon
    d.cli("run", "-d", "--name", "upd", "-m", "64m", "busybox", "sleep", "300")
    try:
        assert _cgroup(d, "upd", "memory/memory.limit_in_bytes") == 64 << 20
        d.cli("update", "-m", "100m", "--memory-swap", "300m", "--cpus", "0.5", "--cpu-shares", "512",
              "--pids-limit", "50", "--restart", "on-failure:3", "upd")
        # applied to the running container's cgroup, without a restart
        assert _cgroup(d, "upd", "memory/memory.limit_in_bytes") == 100 << 20
        assert _cgroup(d, "upd", "memory/memory.memsw.limit_in_bytes") == 300 << 20
        assert _cgroup(d, "upd", "cpu/cpu.cfs_quota_us") == 50000
        assert _cgroup(d, "upd", "cpu/cpu.shares") == 512
        assert _cgroup(d, "upd", "pids/pids.max") == 50
        hc = d.client().api.inspect_container("upd")["HostConfig"]
        assert (hc["Memory"], hc["MemorySwap"], hc["NanoCpus"], hc["CpuShares"], hc["PidsLimit"]) == \
            (100 << 20, 300 << 20, 500_000_000, 512, 50)
        assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
        # kept for the next start
        d.cli("stop", "-t", "0", "upd")
        d.cli("start", "upd")
        assert _cgroup(d, "upd", "memory/memory.limit_in_bytes") == 100 << 20
        assert _cgroup(d, "upd", "pids/pids.max") == 50
        # the SDK's answer is Docker's
        assert d.client().api.update_container("upd", cpu_shares=256) == {"Warnings": []}
        assert _cgroup(d, "upd", "cpu/cpu.shares") == 256
    finally:
        d.cli("rm", "-f", "upd", check=False)


def test_update_of_a_created_container_applies_at_start(daemon: Daemon) -> None:
    d = daemon
    d.cli("create", "--name", "upd-created", "busybox", "sleep", "300")
    try:
        d.cli("update", "-m", "80m", "--memory-swap", "160m", "upd-created")
        d.cli("start", "upd-created")
        assert _cgroup(d, "upd-created", "memory/memory.limit_in_bytes") == 80 << 20
    finally:
        d.cli("rm", "-f", "upd-created", check=False)


def test_update_memory_below_the_reservation_already_set(daemon: Daemon) -> None:
    """As dockerd 20.10 here (cgroup v1, checked on a private dockerd): only a request's own limit and
    reservation are compared, so lowering the limit under a reservation set before is accepted (200),
    applied live, and both values are kept; in one request the pair is a 400."""
    d = daemon
    c = d.client()
    d.cli("run", "-d", "--name", "upd-resv", "-m", "300m", "--memory-reservation", "200m", "busybox", "sleep", "300")
    try:
        assert c.api.update_container("upd-resv", mem_limit="100m") == {"Warnings": []}
        assert _cgroup(d, "upd-resv", "memory/memory.limit_in_bytes") == 100 << 20
        assert _cgroup(d, "upd-resv", "memory/memory.soft_limit_in_bytes") == 200 << 20
        hc = c.api.inspect_container("upd-resv")["HostConfig"]
        assert (hc["Memory"], hc["MemorySwap"], hc["MemoryReservation"]) == (100 << 20, 600 << 20, 200 << 20)
        r = d.cli("update", "-m", "150m", "--memory-reservation", "250m", "upd-resv", check=False)
        assert r.returncode == 1
        assert b"Minimum memory limit can not be less than memory reservation limit, see usage" in r.stderr
        assert c.api.inspect_container("upd-resv")["HostConfig"] == hc
    finally:
        d.cli("rm", "-f", "upd-resv", check=False)


def test_bad_updates_change_nothing(daemon: Daemon) -> None:
    d = daemon
    c = d.client()
    d.cli("run", "-d", "--name", "upd-bad", "-m", "64m", "busybox", "sleep", "300")
    d.cli("run", "-d", "--rm", "--name", "upd-rm", "busybox", "sleep", "300")
    try:
        before = c.api.inspect_container("upd-bad")["HostConfig"]
        r = d.cli("update", "-m", "4m", "upd-bad", check=False)
        assert r.returncode == 1 and b"Minimum memory limit allowed is 6MB" in r.stderr
        with pytest.raises(docker.errors.APIError) as e:
            c.api.update_container("upd-bad", mem_limit="6m", memswap_limit="5m")
        assert e.value.status_code == 400
        assert "Minimum memoryswap limit should be larger than memory limit" in str(e.value.explanation)
        # above the swap limit already set, without a new one: dockerd's 409
        with pytest.raises(docker.errors.APIError) as e:
            c.api.update_container("upd-bad", mem_limit="200m")
        assert e.value.status_code == 409
        assert str(e.value.explanation).endswith(
            "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time")
        with pytest.raises(docker.errors.APIError) as e:
            c.api.update_container("upd-bad", restart_policy={"Name": "sometimes"})
        assert e.value.status_code == 400
        assert c.api.inspect_container("upd-bad")["HostConfig"] == before
        assert _cgroup(d, "upd-bad", "memory/memory.limit_in_bytes") == 64 << 20
        r = d.cli("update", "--restart", "always", "upd-rm", check=False)
        assert r.returncode == 1
        assert b"Restart policy cannot be updated because AutoRemove is enabled for the container" in r.stderr
        assert c.api.inspect_container("upd-rm")["HostConfig"]["RestartPolicy"]["Name"] == "no"
        r = d.cli("update", "-m", "100m", "nosuchcontainer", check=False)
        assert r.returncode == 1 and b"No such container: nosuchcontainer" in r.stderr
    finally:
        d.cli("rm", "-f", "upd-bad", "upd-rm", check=False)


# -- runtimes -----------------------------------------------------------------------------------------

def _runtime_ids(d: Daemon, runtime: str) -> set[str]:
    out = subprocess.run([runtime, f"--root={d.exec_root}/runtime-{runtime}", "list", "-q"], capture_output=True,
                         text=True, check=True).stdout
    return set(out.split())


def test_runtime_per_container_and_in_info(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    c = d.client()
    info = c.info()
    assert info["DefaultRuntime"] == "crun"
    assert {"crun", "runc"} <= set(info["Runtimes"])
    default = d.cli("run", "-d", "busybox", "sleep", "300").stdout.decode().strip()
    other = d.cli("run", "-d", "--runtime", "runc", "busybox", "sleep", "300").stdout.decode().strip()
    assert c.api.inspect_container(default)["HostConfig"]["Runtime"] == "crun"
    assert c.api.inspect_container(other)["HostConfig"]["Runtime"] == "runc"
    assert other in _runtime_ids(d, "runc") and other not in _runtime_ids(d, "crun")
    assert default in _runtime_ids(d, "crun")
    # every later call goes to the container's own runtime, also after berthd restarts
    d.stop()
    d.start()
    assert d.cli("exec", other, "echo", "hi").stdout == b"hi\n"
    d.cli("update", "-m", "50m", "--memory-swap", "100m", other)
    assert _cgroup(d, other, "memory/memory.limit_in_bytes") == 50 << 20
    d.cli("pause", other)
    d.cli("unpause", other)
    d.cli("stop", "-t", "1", other)
    # the runtime's state of an exited container is deleted in the background, after the stop answers
    deadline = time.monotonic() + 10
    while other in _runtime_ids(d, "runc") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert other not in _runtime_ids(d, "runc")
    d.cli("start", other)
    assert other in _runtime_ids(d, "runc")
    d.cli("rm", "-f", other, default)
    r = d.cli("run", "--rm", "--runtime", "nosuch", "busybox", "true", check=False)
    assert r.returncode == 125 and b"unknown or invalid runtime name: nosuch" in r.stderr
    with pytest.raises(docker.errors.APIError) as e:
        c.api.create_container("busybox", ["true"], host_config=c.api.create_host_config(runtime="nosuch"))
    assert e.value.status_code == 400
    assert c.api.containers(all=True) == []


# -- log drivers --------------------------------------------------------------------------------------

def test_log_driver_default_local_and_none(daemon: Daemon) -> None:
    d = daemon
    c = d.client()
    assert {"json-file", "local", "none"} <= set(c.info()["Plugins"]["Log"])
    cid = d.cli("create", "busybox", "true").stdout.decode().strip()
    assert c.api.inspect_container(cid)["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {}}
    d.cli("rm", cid)
    # none: attach still shows the output, but nothing is kept and `docker logs` says why
    out = d.cli("run", "--name", "nolog", "--log-driver", "none", "busybox", "echo", "hello").stdout
    try:
        assert out == b"hello\n"
        cid = c.api.inspect_container("nolog")["Id"]
        assert c.api.inspect_container(cid)["HostConfig"]["LogConfig"]["Type"] == "none"
        assert not any("log" in f for f in os.listdir(os.path.join(d.data_root, "containers", cid)))
        r = d.cli("logs", "nolog", check=False)
        assert r.returncode == 1 and b"configured logging driver does not support reading" in r.stderr
        with pytest.raises(docker.errors.APIError) as e:
            c.api.logs(cid)
        assert e.value.status_code == 501
    finally:
        d.cli("rm", "nolog", check=False)
    # local keeps a log that reads back
    d.cli("run", "--name", "loclog", "--log-driver", "local", "--log-opt", "max-size=1m", "busybox", "echo", "kept")
    try:
        assert d.cli("logs", "loclog").stdout == b"kept\n"
        assert c.api.inspect_container("loclog")["HostConfig"]["LogConfig"] == \
            {"Type": "local", "Config": {"max-size": "1m"}}
    finally:
        d.cli("rm", "loclog", check=False)


def test_log_path_is_shown_for_a_started_json_file_log_only(daemon: Daemon) -> None:
    """As dockerd 20.10: inspect's LogPath is "" with --log-driver none or local, and for a json-file
    container until it first starts; then the file that holds its log."""
    c = daemon.client()
    names = ["lp-none", "lp-local", "lp-json"]
    try:
        for name, driver in zip(names, ["none", "local", "json-file"], strict=True):
            daemon.cli("create", "--name", name, "--log-driver", driver, "busybox", "echo", "logged")
            assert c.api.inspect_container(name)["LogPath"] == ""
            daemon.cli("start", "-a", name)
            if driver != "json-file":
                assert c.api.inspect_container(name)["LogPath"] == ""
        path = c.api.inspect_container("lp-json")["LogPath"]
        with open(path, "rb") as f:
            assert b"logged" in f.read()
        daemon.cli("start", "-a", "lp-json")  # a second run: still the same file
        assert c.api.inspect_container("lp-json")["LogPath"] == path
    finally:
        for name in names:
            daemon.cli("rm", "-f", name, check=False)


@pytest.mark.parametrize(("args", "message"), [
    (["--log-driver", "nosuch"], "logger: no log driver named 'nosuch' is registered"),
    (["--log-opt", "colour=blue"], "unknown log opt 'colour' for json-file log driver"),
    (["--log-driver", "local", "--log-opt", "labels-regex=x", "--log-opt", "colour=blue"],
     "unknown log opt 'colour' for log driver local"),
    (["--log-opt", "mode=sometimes"], "logger: logging mode not supported: sometimes"),
])
def test_bad_log_config_is_refused(daemon: Daemon, args: list[str], message: str) -> None:
    before = daemon.client().api.containers(all=True)
    r = daemon.cli("create", *args, "busybox", "true", check=False)
    assert r.returncode == 1 and message.encode() in r.stderr
    assert daemon.client().api.containers(all=True) == before


# -- docker cp and the volumes of created and stopped containers ---------------------------------------

def _host_mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


@pytest.mark.parametrize("state", ["created", "exited"])
def test_cp_sees_volumes_and_binds_of_a_stopped_container(daemon: Daemon, tmp_path: pytest.TempPathFactory,
                                                          state: str) -> None:
    d = daemon
    bind = tmp_path / "bind"  # type: ignore[operator]
    outside = tmp_path / "outside"  # type: ignore[operator]
    bind.mkdir()
    outside.mkdir()
    (bind / "from-bind.txt").write_text("bind content\n")
    (outside / "secret").write_text("host only\n")
    # hostile links, as a container could leave them: in the bind and in the volume, to / and to a host dir
    os.symlink("/", bind / "to-root")
    os.symlink(str(outside), bind / "to-outside")
    name = f"cpvol-{state}"
    d.cli("volume", "create", name)
    d.cli("create", "--name", name, "-v", f"{name}:/vol", "-v", f"{bind}:/data/bind", "busybox", "sh", "-c",
          "ln -s / /vol/to-root; ln -s " + str(outside) + " /vol/to-outside; echo made > /vol/made.txt")
    try:
        if state == "exited":
            d.cli("start", "-a", name)
        src = tmp_path / "in.txt"  # type: ignore[operator]
        src.write_text("copied in\n")
        d.cli("cp", str(src), f"{name}:/vol/in.txt")
        d.cli("cp", str(src), f"{name}:/data/bind/in.txt")
        assert (bind / "in.txt").read_text() == "copied in\n"
        out = tmp_path / "out"  # type: ignore[operator]
        out.mkdir()
        d.cli("cp", f"{name}:/data/bind/from-bind.txt", str(out))
        assert (out / "from-bind.txt").read_text() == "bind content\n"
        d.cli("cp", f"{name}:/vol/in.txt", str(out / "vol-in.txt"))
        assert (out / "vol-in.txt").read_text() == "copied in\n"
        if state == "exited":
            d.cli("cp", f"{name}:/vol/made.txt", str(out))
            assert (out / "made.txt").read_text() == "made\n"
        # the volume's content really is in the volume: a new container sees it
        assert d.cli("run", "--rm", "-v", f"{name}:/v", "busybox", "cat", "/v/in.txt").stdout == b"copied in\n"
        # links lead nowhere outside the container: a host-only file is not found through them ...
        for link in ("/data/bind/to-outside/secret", "/data/bind/to-root" + str(outside) + "/secret"):
            r = d.cli("cp", f"{name}:{link}", str(out / "leak"), check=False)
            assert r.returncode == 1 and b"Could not find the file" in r.stderr
            assert not (out / "leak").exists()
        # ... and a copy through them lands inside the container, never on the host
        d.cli("cp", str(src), f"{name}:/data/bind/to-root/tmp/")
        r = d.cli("cp", str(src), f"{name}:/data/bind/to-outside/", check=False)
        assert r.returncode == 1
        assert sorted(os.listdir(outside)) == ["secret"]
        assert not os.path.exists("/tmp/in.txt") or open("/tmp/in.txt").read() != "copied in\n"
        d.cli("cp", f"{name}:/tmp/in.txt", str(out / "container-tmp.txt"))
        assert (out / "container-tmp.txt").read_text() == "copied in\n"
        # nothing of the view is left mounted on the host
        assert _host_mounts_under(str(bind)) == []
        assert d.client().api.inspect_container(name)["State"]["Status"] == state
    finally:
        d.cli("rm", "-f", name, check=False)
        d.cli("volume", "rm", name, check=False)


# -- commit, load, prune ----------------------------------------------------------------------------------

def test_commit_with_pause_of_stopped_and_exiting_containers(daemon: Daemon) -> None:
    c = daemon.client()
    stopped = c.containers.run("busybox", ["sh", "-c", "echo x > /made"], detach=True)
    stopped.wait()
    iid = c.api.commit(stopped.id, repository="committed", tag="stopped", pause=True)["Id"]
    assert daemon.cli("run", "--rm", iid, "cat", "/made").stdout == b"x\n"
    stopped.remove()
    # a container that ends while the commit asks to pause it: committed, not a 500
    for i in range(6):
        ct = c.containers.run("busybox", ["sh", "-c", "echo y > /made; sleep 0.3"], detach=True)
        time.sleep(0.27 + 0.01 * i)
        c.api.commit(ct.id, repository="committed", tag=f"race{i}", pause=True)
        ct.remove(force=True)
    assert daemon.client().api.inspect_image("committed:race0")["Id"]
    for i in range(6):
        c.api.remove_image(f"committed:race{i}")
    c.api.remove_image("committed:stopped")


def test_load_errors_arrive_in_the_stream(daemon: Daemon) -> None:
    c = daemon.client()
    before = c.api.images(all=True)
    with pytest.raises(docker.errors.ImageLoadError):
        c.images.load(b"this is not an image archive")
    for quiet in (False, True):
        resp = c.api._post(c.api._url("/images/load"), data=b"not a tar", params={"quiet": int(quiet)})
        assert resp.status_code == 200
        last = [line for line in resp.text.splitlines() if line.strip()][-1]
        assert "errorDetail" in last and "error" in last
    r = daemon.cli("load", input=b"garbage" * 100, check=False)
    assert r.returncode == 1 and r.stderr.strip()
    assert c.api.images(all=True) == before


def test_prune_answers_are_lists(daemon: Daemon) -> None:
    c = daemon.client()
    assert c.api.prune_containers(filters={"label": "nothing-has-this"}) == \
        {"ContainersDeleted": [], "SpaceReclaimed": 0}
    assert c.api.prune_volumes(filters={"label": "nothing-has-this"}) == {"VolumesDeleted": [], "SpaceReclaimed": 0}
    assert c.api.prune_images(filters={"label": "nothing-has-this"}) == {"ImagesDeleted": [], "SpaceReclaimed": 0}
    assert c.api.prune_networks(filters={"label": "nothing-has-this"})["NetworksDeleted"] == []
    assert c.api.prune_builds()["CachesDeleted"] == []
