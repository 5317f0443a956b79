"""docker exec through the CLI and docker-py: output, exit codes, stdin, TTY, env/user/workdir, errors."""

from __future__ import annotations

import shutil
import subprocess
import time

import docker
import pytest

from tests.conftest import DOCKER_CLI, Daemon, cleanup_daemon, new_daemon


@pytest.fixture(scope="module")
def monitor(each_monitor: str) -> str:
    """This module's daemon runs once with berth-monitor and once with conmon."""
    return each_monitor


HAS_SCRIPT = DOCKER_CLI is not None and shutil.which("script") is not None
# runc hands a terminal over only to a detached exec, so its exec path differs from crun's
RUNTIMES = ["crun", pytest.param("runc", marks=pytest.mark.skipif(not shutil.which("runc"), reason="no runc"))]


@pytest.fixture(params=RUNTIMES)
def sleeper(client: docker.DockerClient, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    ct = client.containers.run("busybox", ["sleep", "300"], detach=True, runtime=request.param)
    yield ct
    ct.remove(force=True)


def test_exec_output_and_exit_code(daemon: Daemon, sleeper) -> None:  # type: ignore[no-untyped-def]
    assert daemon.cli("exec", sleeper.id, "echo", "hello").stdout == b"hello\n"
    r = daemon.cli("exec", sleeper.id, "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (7, b"out\n", b"err\n")
    r = daemon.cli("exec", sleeper.id, "/no/such/cmd", check=False)
    assert r.returncode != 0


def test_exec_stdin_env_user_workdir(daemon: Daemon, sleeper) -> None:  # type: ignore[no-untyped-def]
    r = daemon.cli("exec", "-i", sleeper.id, "sh", "-c", "tr a-z A-Z", input=b"shout\n")
    assert r.stdout == b"SHOUT\n"
    out = daemon.cli("exec", "-e", "FOO=bar", "-w", "/tmp", "-u", "65534:65534", sleeper.id, "sh", "-c",
                     "echo $FOO; pwd; id -u; id -g").stdout
    assert out == b"bar\n/tmp\n65534\n65534\n"


def test_exec_tty(sleeper) -> None:  # type: ignore[no-untyped-def]
    res = sleeper.exec_run(["sh", "-c", "tty; stty size"], tty=True)
    lines = res.output.decode().split("\r\n")
    assert res.exit_code == 0 and lines[0].startswith("/dev/pts/")


@pytest.mark.skipif(DOCKER_CLI is None or subprocess.run(["which", "script"], capture_output=True).returncode,
                    reason="needs the docker CLI and script(1) for a real terminal")
def test_cli_exec_it(daemon: Daemon, sleeper) -> None:  # type: ignore[no-untyped-def]
    r = subprocess.run(["script", "-qec", f"docker exec -it {sleeper.id} sh -c 'tty; exit 4'", "/dev/null"],
                       capture_output=True, env={"DOCKER_HOST": daemon.host, "PATH": "/usr/local/bin:/usr/bin:/bin"},
                       timeout=30)
    assert b"/dev/pts/" in r.stdout
    assert r.returncode == 4


def _exec_it(daemon: Daemon, cid: str, keys: bytes) -> subprocess.CompletedProcess:
    """``docker exec -it <cid> sh`` on a real 45x123 terminal (script(1)), typing ``keys``."""
    return subprocess.run(["script", "-qec", f"stty rows 45 cols 123; docker exec -it {cid} sh", "/dev/null"],
                          input=keys, capture_output=True, timeout=30,
                          env={"DOCKER_HOST": daemon.host, "PATH": "/usr/local/bin:/usr/bin:/bin"})


@pytest.mark.skipif(not HAS_SCRIPT, reason="needs the docker CLI and script(1) for a real terminal")
def test_cli_exec_it_shell_stdin_resize_exit_code(daemon: Daemon, sleeper) -> None:  # type: ignore[no-untyped-def]
    """An interactive shell: keystrokes reach it, the CLI's terminal size is the exec's, and the
    shell's exit status is docker's (runc: a detached exec, reaped by berth's helper)."""
    r = _exec_it(daemon, sleeper.id, b"echo typed-$((40+2))\nstty size\nexit 9\n")
    assert b"typed-42" in r.stdout and b"45 123" in r.stdout, r.stdout
    assert r.returncode == 9
    r = _exec_it(daemon, sleeper.id, b"kill -9 $$\n")
    assert r.returncode == 137  # killed by a signal: 128+N, as Docker


def test_exec_tty_detached_then_inspect(client: docker.DockerClient, sleeper) -> None:  # type: ignore[no-untyped-def]
    """A detached TTY exec: inspect shows its pid while it runs, then its exit code."""
    eid = client.api.exec_create(sleeper.id, ["sh", "-c", "sleep 0.5; exit 3"], tty=True)["Id"]
    client.api.exec_start(eid, detach=True, tty=True)
    deadline = time.monotonic() + 10
    info = client.api.exec_inspect(eid)
    while not info["Pid"] and info["Running"] and time.monotonic() < deadline:
        time.sleep(0.05)
        info = client.api.exec_inspect(eid)
    assert info["Running"] and info["Pid"] > 0
    with open(f"/proc/{info['Pid']}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sh", b"-c"]
    while info["Running"] and time.monotonic() < deadline:
        time.sleep(0.05)
        info = client.api.exec_inspect(eid)
    assert (info["Running"], info["ExitCode"]) == (False, 3)


@pytest.mark.skipif(not HAS_SCRIPT or not shutil.which("runc"), reason="needs the docker CLI, script(1) and runc")
def test_cli_exec_it_under_default_runtime_runc(busybox_tar: str) -> None:
    """berthd --default-runtime runc: a container without --runtime runs under runc, and exec -it works."""
    d = new_daemon(runtime="runc")
    try:
        d.start()
        with open(busybox_tar, "rb") as f:
            list(d.client().api.load_image(f.read()))
        cid = d.cli("run", "-d", "busybox", "sleep", "300").stdout.decode().strip()
        assert d.client().api.inspect_container(cid)["HostConfig"]["Runtime"] == "runc"
        r = _exec_it(d, cid, b"tty\nexit 5\n")
        assert b"/dev/pts/" in r.stdout and r.returncode == 5
    finally:
        cleanup_daemon(d)


def test_exec_detach_and_inspect(client: docker.DockerClient, sleeper) -> None:  # type: ignore[no-untyped-def]
    eid = client.api.exec_create(sleeper.id, ["sh", "-c", "sleep 0.3; touch /tmp/done"])["Id"]
    client.api.exec_start(eid, detach=True)
    info = client.api.exec_inspect(eid)
    assert info["ContainerID"] == sleeper.id and info["ProcessConfig"]["entrypoint"] == "sh"
    for _ in range(50):
        if client.api.exec_inspect(eid)["ExitCode"] is not None:
            break
        import time

        time.sleep(0.1)
    assert client.api.exec_inspect(eid)["ExitCode"] == 0 and not client.api.exec_inspect(eid)["Running"]
    assert sleeper.exec_run(["ls", "/tmp/done"]).exit_code == 0
    assert eid in client.api.inspect_container(sleeper.id)["ExecIDs"]
    with pytest.raises(docker.errors.APIError) as e:
        client.api.exec_start(eid)
    assert e.value.status_code == 409


def test_exec_privileged_has_all_caps(sleeper) -> None:  # type: ignore[no-untyped-def]
    normal = sleeper.exec_run(["sh", "-c", "grep CapEff /proc/self/status"]).output.split()[1]
    priv = sleeper.exec_run(["sh", "-c", "grep CapEff /proc/self/status"], privileged=True).output.split()[1]
    assert normal == b"00000000a80425fb" and int(priv, 16) > int(normal, 16)


def test_exec_errors(client: docker.DockerClient) -> None:
    ct = client.containers.create("busybox", ["true"])
    with pytest.raises(docker.errors.APIError) as e:
        client.api.exec_create(ct.id, ["true"])
    assert e.value.status_code == 409 and "is not running" in str(e.value.explanation)
    ct.remove()
    with pytest.raises(docker.errors.NotFound):
        client.api.exec_inspect("nope")
    run = client.containers.run("busybox", ["sleep", "60"], detach=True)
    try:
        with pytest.raises(docker.errors.APIError) as e:
            client.api.exec_create(run.id, [])
        assert e.value.status_code == 400
        run.pause()
        with pytest.raises(docker.errors.APIError) as e:
            client.api.exec_create(run.id, ["true"])
        assert e.value.status_code == 409 and "paused" in str(e.value.explanation)
    finally:
        run.remove(force=True)


@pytest.mark.skipif(DOCKER_CLI is None or subprocess.run(["which", "script"], capture_output=True).returncode,
                    reason="needs the docker CLI and script(1) for a real terminal")
def test_cli_run_it(daemon: Daemon) -> None:
    """docker run -it: a terminal inside, keystrokes in, the exit code out."""
    r = subprocess.run(["script", "-qec", "docker run -it --rm busybox sh", "/dev/null"],
                       input=b"tty\necho typed-$((40+2))\nexit 6\n", capture_output=True,
                       env={"DOCKER_HOST": daemon.host, "PATH": "/usr/local/bin:/usr/bin:/bin"}, timeout=60)
    assert b"/dev/pts/0" in r.stdout and b"typed-42" in r.stdout
    assert r.returncode == 6


def test_exec_inspect_shows_the_process_pid(client: docker.DockerClient, sleeper) -> None:  # type: ignore[no-untyped-def]
    """The runtime writes the exec pid file a little after it starts: inspect shows it, not 0."""
    eid = client.api.exec_create(sleeper.id, ["sleep", "30"])["Id"]
    client.api.exec_start(eid, detach=True)
    deadline = time.monotonic() + 5
    info = client.api.exec_inspect(eid)
    while not info["Pid"] and time.monotonic() < deadline:
        time.sleep(0.05)
        info = client.api.exec_inspect(eid)
    assert info["Running"] and info["Pid"] > 0
    with open(f"/proc/{info['Pid']}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"30"]


def test_exec_output_waits_for_a_slow_client(client: docker.DockerClient, sleeper) -> None:  # type: ignore[no-untyped-def]
    """A client that does not read holds the exec'd process back (berthd keeps at most a small
    buffer), and then gets every byte."""
    size = 16 << 20
    eid = client.api.exec_create(sleeper.id, ["sh", "-c", f"head -c {size} /dev/zero; touch /tmp/all-written"])["Id"]
    sock = client.api.exec_start(eid, socket=True)
    raw = getattr(sock, "_sock", sock)
    try:
        time.sleep(1.5)  # not reading
        assert sleeper.exec_run(["test", "-e", "/tmp/all-written"]).exit_code == 1
        assert client.api.exec_inspect(eid)["Running"]
        buf, total = b"", 0
        while True:
            chunk = raw.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 8 and len(buf) >= 8 + int.from_bytes(buf[4:8], "big"):
                n = int.from_bytes(buf[4:8], "big")
                assert buf[0] == 1  # stdout
                total += n
                buf = buf[8 + n:]
    finally:
        raw.close()
    assert total == size and buf == b""
    assert sleeper.exec_run(["test", "-e", "/tmp/all-written"]).exit_code == 0
