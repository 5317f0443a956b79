"""Containers through the official docker CLI and docker-py: run, logs, attach, wait, stop, kill, rm."""

from __future__ import annotations

import json
import os
import threading
import time

import docker
import pytest

from tests.conftest import Daemon, mounts_under


def test_cli_run_prints_and_exits(daemon: Daemon) -> None:
    r = daemon.cli("run", "--rm", "busybox", "echo", "hello")
    assert r.stdout == b"hello\n"
    r = daemon.cli("run", "--rm", "busybox", "sh", "-c", "exit 3", check=False)
    assert r.returncode == 3
    r = daemon.cli("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert r.stdout == b"out\n" and r.stderr == b"err\n"
    assert daemon.client().api.containers(all=True) == []


def test_cli_run_exit_code_kept_without_rm(daemon: Daemon) -> None:
    r = daemon.cli("run", "--name", "exit3", "busybox", "sh", "-c", "exit 3", check=False)
    assert r.returncode == 3
    state = daemon.client().api.inspect_container("exit3")["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 3 and not state["Running"]
    assert state["FinishedAt"] >= state["StartedAt"] > "2000"
    daemon.cli("rm", "exit3")


def test_cli_stdin_is_forwarded(daemon: Daemon) -> None:
    r = daemon.cli("run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z", input=b"piped text\n")
    assert r.stdout == b"PIPED TEXT\n"


def test_cli_detached_ps_logs_stop_rm(daemon: Daemon) -> None:
    cid = daemon.cli("run", "-d", "--name", "sleeper", "busybox", "sh", "-c",
                     "trap 'echo got TERM; exit 0' TERM; echo started; while true; do sleep 0.1; done"
                     ).stdout.decode().strip()
    assert len(cid) == 64
    ps = daemon.cli("ps", "--format", "{{.ID}} {{.Names}} {{.Status}}").stdout.decode()
    assert f"{cid[:12]} sleeper Up" in ps
    for _ in range(50):
        if b"started" in daemon.cli("logs", "sleeper").stdout:
            break
        time.sleep(0.1)
    assert daemon.cli("logs", "sleeper").stdout == b"started\n"
    t0 = time.monotonic()
    daemon.cli("stop", "sleeper")
    assert time.monotonic() - t0 < 5  # the trap ends it: no 10 s grace period
    assert daemon.cli("logs", "sleeper").stdout == b"started\ngot TERM\n"
    st = daemon.client().api.inspect_container("sleeper")["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 0
    assert "sleeper" not in daemon.cli("ps", "--format", "{{.Names}}").stdout.decode()
    assert "sleeper" in daemon.cli("ps", "-a", "--format", "{{.Names}}").stdout.decode()
    daemon.cli("rm", "sleeper")
    assert not [m for m in mounts_under(daemon.root) if cid in m]


def test_stop_escalates_to_sigkill(daemon: Daemon) -> None:
    c = daemon.client()
    ct = c.containers.run("busybox", ["sleep", "60"], detach=True)  # sleep ignores nothing, but is PID 1
    t0 = time.monotonic()
    ct.stop(timeout=1)
    ct.reload()
    assert ct.attrs["State"]["ExitCode"] == 137
    assert 0.9 < time.monotonic() - t0 < 6
    ct.remove()


def test_docker_py_run_returns_output(client: docker.DockerClient) -> None:
    assert client.containers.run("busybox", "echo hi") == b"hi\n"
    assert client.containers.run("busybox", ["sh", "-c", "echo a; ls / | wc -l; echo b"], remove=True) == \
        b"a\n11\nb\n"
    with pytest.raises(docker.errors.ContainerError) as e:
        client.containers.run("busybox", ["sh", "-c", "echo boom >&2; exit 7"], remove=True)
    assert e.value.exit_status == 7 and b"boom" in e.value.stderr
    for ct in client.containers.list(all=True):
        ct.remove(force=True)


def test_logs_options(client: docker.DockerClient) -> None:
    ct = client.containers.run("busybox", ["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; echo e >&2"],
                               detach=True)
    assert ct.wait()["StatusCode"] == 0
    assert ct.logs() == b"line1\nline2\nline3\nline4\nline5\ne\n"
    assert ct.logs(stderr=False) == b"line1\nline2\nline3\nline4\nline5\n"
    assert ct.logs(stdout=False) == b"e\n"
    assert ct.logs(tail=2) == b"line5\ne\n"
    stamped = ct.logs(timestamps=True, stderr=False).decode().splitlines()
    assert len(stamped) == 5 and stamped[0].endswith(" line1") and stamped[0][:4].isdigit()
    assert stamped[0].split(" ")[0].endswith("Z")
    assert ct.logs(since=int(time.time()) + 5) == b""
    ct.remove()


def test_logs_follow_streams_until_exit(client: docker.DockerClient) -> None:
    ct = client.containers.run("busybox", ["sh", "-c", "echo one; sleep 0.5; echo two"], detach=True)
    chunks = list(ct.logs(stream=True, follow=True))
    assert b"".join(chunks) == b"one\ntwo\n"
    ct.remove()


def test_tty_logs_are_raw(client: docker.DockerClient) -> None:
    ct = client.containers.run("busybox", ["sh", "-c", "echo tty"], tty=True, detach=True)
    ct.wait()
    assert ct.logs() == b"tty\r\n"
    ct.remove()


def test_wait_conditions(client: docker.DockerClient) -> None:
    ct = client.containers.create("busybox", ["sh", "-c", "exit 5"])
    # not-running on a created container returns at once
    assert client.api.wait(ct.id, condition="not-running")["StatusCode"] == 0
    # next-exit registered before start (as the docker CLI does) sees the exit
    result: dict = {}
    waiter = threading.Thread(target=lambda: result.update(client.api.wait(ct.id, condition="next-exit")))
    waiter.start()
    time.sleep(0.3)
    ct.start()
    waiter.join(20)
    assert result["StatusCode"] == 5
    assert ct.wait()["StatusCode"] == 5  # not-running on an exited container: at once
    ct.remove()
    auto = client.api.create_container("busybox", ["sh", "-c", "sleep 0.2; exit 4"],
                                       host_config=client.api.create_host_config(auto_remove=True))
    client.api.start(auto["Id"])
    assert client.api.wait(auto["Id"], condition="removed")["StatusCode"] == 4
    with pytest.raises(docker.errors.NotFound):
        client.api.inspect_container(auto["Id"])


def test_kill_and_force_remove(client: docker.DockerClient) -> None:
    ct = client.containers.run("busybox", ["sleep", "60"], detach=True)
    with pytest.raises(docker.errors.APIError) as e:
        ct.remove()
    assert e.value.status_code == 409
    assert "You cannot remove a running container" in str(e.value.explanation)
    ct.kill(signal="SIGTERM")  # PID 1 without a handler ignores TERM
    time.sleep(0.3)
    ct.reload()
    assert ct.status == "running"
    ct.kill()
    ct.reload()
    assert ct.status == "exited" and ct.attrs["State"]["ExitCode"] == 137
    with pytest.raises(docker.errors.APIError) as e:
        ct.kill()
    assert e.value.status_code == 409
    ct2 = client.containers.run("busybox", ["sleep", "60"], detach=True)
    ct2.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        ct2.reload()
    ct.remove()


def test_create_options_reach_the_process(client: docker.DockerClient) -> None:
    out = client.containers.run(
        "busybox", ["sh", "-c", "echo $FOO; pwd; id -u; hostname; cat /etc/hostname"],
        environment=["FOO=bar"], working_dir="/work/dir", user="65534", hostname="boxy", remove=True)
    assert out == b"bar\n/work/dir\n65534\nboxy\nboxy\n"
    ep = client.containers.run("busybox", ["x", "y"], entrypoint=["echo"], remove=True)
    assert ep == b"x y\n"


def test_container_sees_only_loopback(client: docker.DockerClient) -> None:
    out = client.containers.run("busybox", ["sh", "-c", "ls /sys/class/net"], network_mode="none", remove=True)
    assert out.split() == [b"lo"]


def test_default_capabilities_and_namespaces(client: docker.DockerClient) -> None:
    out = client.containers.run("busybox", ["sh", "-c", "grep CapEff /proc/self/status; echo $$"], remove=True)
    lines = out.decode().split("\n")
    assert lines[0].split()[1] == "00000000a80425fb"  # Docker's 14 default capabilities
    assert lines[1] == "1"  # own pid namespace


def test_list_filters_and_inspect(client: docker.DockerClient) -> None:
    a = client.containers.create("busybox", ["true"], name="filt-a", labels={"role": "db"})
    b = client.containers.create("busybox", ["true"], name="filt-b", labels={"role": "web"})
    try:
        names = {c.name for c in client.containers.list(all=True, filters={"label": "role=db"})}
        assert names == {"filt-a"}
        assert {c.name for c in client.containers.list(all=True, filters={"name": "filt-"})} == {"filt-a", "filt-b"}
        assert {c.name for c in client.containers.list(all=True, filters={"status": "created"})} >= \
            {"filt-a", "filt-b"}
        assert client.containers.list(filters={"label": "role=db"}) == []
        assert len(client.api.containers(all=True, limit=1)) == 1
        info = client.api.inspect_container("filt-a")
        assert info["Name"] == "/filt-a" and info["Config"]["Labels"] == {"role": "db"}
        assert info["State"]["Status"] == "created" and info["Path"] == "true"
        assert info["Config"]["Hostname"] == info["Id"][:12]
        for key in ("Running", "Paused", "Restarting", "OOMKilled", "Dead", "Pid", "ExitCode", "Error",
                    "StartedAt", "FinishedAt"):
            assert key in info["State"]
    finally:
        a.remove()
        b.remove()


def test_name_conflict_and_bad_names(client: docker.DockerClient) -> None:
    a = client.containers.create("busybox", ["true"], name="dup")
    try:
        with pytest.raises(docker.errors.APIError) as e:
            client.containers.create("busybox", ["true"], name="dup")
        assert e.value.status_code == 409
        assert 'The container name "/dup" is already in use' in str(e.value.explanation)
        with pytest.raises(docker.errors.APIError) as e:
            client.containers.create("busybox", ["true"], name="bad name!")
        assert e.value.status_code == 400
    finally:
        a.remove()


def test_missing_executable(daemon: Daemon) -> None:
    r = daemon.cli("run", "--name", "noexec", "busybox", "/no/such/binary", check=False)
    assert r.returncode == 127
    assert b"no/such/binary" in r.stderr
    st = daemon.client().api.inspect_container("noexec")["State"]
    assert st["ExitCode"] == 127 and st["Error"]
    daemon.cli("rm", "noexec")
    assert not [m for m in mounts_under(daemon.root) if "merged" in m]


def test_start_twice_is_304_and_restart(client: docker.DockerClient) -> None:
    ct = client.containers.run("busybox", ["sleep", "60"], detach=True)
    r = client.api._post(client.api._url("/containers/{0}/start", ct.id))
    assert r.status_code == 304
    pid1 = client.api.inspect_container(ct.id)["State"]["Pid"]
    client.api.restart(ct.id, timeout=0)
    st = client.api.inspect_container(ct.id)["State"]
    assert st["Running"] and st["Pid"] != pid1
    ct.remove(force=True)


def test_rootfs_is_copy_on_write(client: docker.DockerClient, daemon: Daemon) -> None:
    a = client.containers.run("busybox", ["sh", "-c", "echo changed > /etc/passwd; rm /bin/vi; touch /new"],
                              detach=True)
    a.wait()
    b = client.containers.run("busybox", ["sh", "-c", "head -1 /etc/passwd; ls /bin/vi; ls /new 2>&1; true"],
                              remove=True)
    assert b.startswith(b"root:x:0:0") and b"/bin/vi" in b and b"No such file" in b
    upper = client.api.inspect_container(a.id)["GraphDriver"]["Data"]["UpperDir"]
    assert os.path.exists(os.path.join(upper, "new"))
    a.remove()
    assert not os.path.exists(upper)


def test_attach_before_start_gets_all_output(client: docker.DockerClient) -> None:
    ct = client.api.create_container("busybox", ["sh", "-c", "echo first; echo second >&2"])
    sock = client.api.attach(ct["Id"], stream=True, stdout=True, stderr=True, demux=True)
    client.api.start(ct["Id"])
    got_out, got_err = b"", b""
    for out, err in sock:
        got_out += out or b""
        got_err += err or b""
    assert (got_out, got_err) == (b"first\n", b"second\n")
    client.api.remove_container(ct["Id"])


def test_invalid_host_config_is_400(client: docker.DockerClient) -> None:
    with pytest.raises(docker.errors.APIError) as e:
        client.api.create_container("busybox", ["true"], host_config={"ShmSize": -5})
    assert e.value.status_code == 400 and "ShmSize" in str(e.value.explanation)
    with pytest.raises(docker.errors.APIError) as e:
        client.api.create_container("busybox", ["true"], host_config={"NetworkMode": "nonet"})
    assert e.value.status_code == 400


def test_cli_inspect_format(daemon: Daemon) -> None:
    daemon.cli("create", "--name", "fmt", "busybox", "true")
    out = daemon.cli("inspect", "--format", "{{json .State}}", "fmt").stdout
    assert json.loads(out)["Status"] == "created"
    daemon.cli("rm", "fmt")


def test_ps_size(daemon: Daemon) -> None:
    daemon.cli("run", "--name", "sized", "busybox", "sh", "-c", "head -c 12345 /dev/zero > /blob")
    try:
        out = daemon.cli("ps", "-a", "-s", "--filter", "name=sized", "--format", "{{.Size}}").stdout.decode()
        assert out.startswith("12.3kB")
        sized = [c for c in daemon.client().api.containers(all=True, size=True) if c["Names"] == ["/sized"]]
        assert sized[0]["SizeRw"] == 12345
    finally:
        daemon.cli("rm", "sized")


def test_bad_stop_timeout_is_400_and_stops_nothing(client: docker.DockerClient) -> None:
    ct = client.containers.run("busybox", ["sleep", "60"], detach=True)
    try:
        for action in ("stop", "restart"):
            r = client.api._post(client.api._url("/containers/{0}/" + action, ct.id), params={"t": "soon"})
            assert r.status_code == 400 and "invalid value for t" in r.json()["message"]
        ct.reload()
        assert ct.status == "running"
    finally:
        ct.remove(force=True)
