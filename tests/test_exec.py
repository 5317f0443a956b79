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


# --- the initial console size: a command that reads its terminal's size at once sees the client's ---

def _on_terminal(daemon: Daemon, cmd: str) -> subprocess.CompletedProcess:
    """``cmd`` (a docker CLI command line) on a real 45x123 terminal made by script(1)."""
    return subprocess.run(["script", "-qec", f"stty rows 45 cols 123; {cmd}", "/dev/null"], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=60,
                          env={"DOCKER_HOST": daemon.host, "PATH": "/usr/local/bin:/usr/bin:/bin"})


def _runtime(client: docker.DockerClient, cid: str) -> str:
    return str(client.api.inspect_container(cid)["HostConfig"]["Runtime"])


def _exec_start(api: docker.APIClient, eid: str, body: dict) -> bytes:
    """POST /exec/{id}/start with ``body`` as given (docker-py cannot send ConsoleSize); the TTY output."""
    res = api._post_json(api._url("/exec/{0}/start", eid), data=body,  # type: ignore[attr-defined]
                         headers={"Connection": "Upgrade", "Upgrade": "tcp"}, stream=True)
    return bytes(api._read_from_socket(res, stream=False, tty=True))  # type: ignore[attr-defined]


@pytest.mark.skipif(not HAS_SCRIPT, reason="needs the docker CLI and script(1) for a real terminal")
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_cli_run_it_starts_with_the_terminal_size(daemon: Daemon, runtime: str) -> None:
    """The CLI sends its terminal's size as HostConfig.ConsoleSize: the runtime sizes the container's
    terminal before the process runs, not when the CLI's first resize comes (after the start)."""
    r = _on_terminal(daemon, f"docker run -it --rm --runtime {runtime} busybox stty size")
    assert b"45 123\r\n" in r.stdout and r.returncode == 0, r.stdout


def test_sdk_exec_console_size(daemon: Daemon, client: docker.DockerClient, sleeper) -> None:  # type: ignore[no-untyped-def]
    """The start's ConsoleSize (API 1.42+, with the start's Tty), else the create's, is the exec's
    terminal size from the start; the SDK never resizes, so without it the size stays 0x0."""
    # crun sizes an exec's terminal from its parent just after the fork, so a command that reads the
    # size at once can win that race (as under dockerd with crun); runc sizes it before the command runs
    cmd = ["sh", "-c", "sleep 0.3; stty size"] if _runtime(client, sleeper.id) == "crun" else ["stty", "size"]
    eid = client.api.exec_create(sleeper.id, cmd, tty=True)["Id"]
    assert _exec_start(client.api, eid, {"Tty": True, "ConsoleSize": [12, 34]}) == b"12 34\r\n"
    eid = client.api._post_json(client.api._url("/containers/{0}/exec", sleeper.id),  # type: ignore[attr-defined]
                                data={"Cmd": cmd, "Tty": True, "AttachStdout": True,
                                      "ConsoleSize": [20, 60]}).json()["Id"]
    assert _exec_start(client.api, eid, {"Tty": True}) == b"20 60\r\n"
    # before API 1.42 there was no ConsoleSize: dockerd ignores it, and so does berthd
    old = docker.APIClient(base_url=daemon.host, version="1.41", timeout=60)
    eid = old.exec_create(sleeper.id, cmd, tty=True)["Id"]
    out = _exec_start(old, eid, {"Tty": True, "ConsoleSize": [12, 34]})
    assert out.startswith(b"stty: standard input"), out  # busybox's words for a 0x0 terminal


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sdk_create_console_size(client: docker.DockerClient, runtime: str) -> None:
    """HostConfig.ConsoleSize is the container's terminal size from its start (under either monitor),
    shown by inspect; a container without a terminal runs as before."""
    ids = []
    try:
        for tty, size in ((True, [21, 77]), (False, [21, 77]), (True, [0, 0])):
            ids.append(client.api.create_container("busybox", ["stty", "size"], tty=tty,
                                                   host_config={"ConsoleSize": size, "Runtime": runtime})["Id"])
            assert client.api.inspect_container(ids[-1])["HostConfig"]["ConsoleSize"] == size
            client.api.start(ids[-1])
        for i in ids:
            client.api.wait(i)
        assert client.api.logs(ids[0]) == b"21 77\r\n"
        assert client.api.logs(ids[1]) == b"stty: standard input: Inappropriate ioctl for device\n"  # no terminal
        assert client.api.logs(ids[2]) == b"stty: standard input\r\n"  # [0, 0]: no initial size
    finally:
        for i in ids:
            client.api.remove_container(i, force=True)


def test_create_console_size_is_checked(daemon: Daemon, client: docker.DockerClient) -> None:
    """Two non-negative integers, as Go decodes a [2]uint; anything else is a 400 in dockerd's words
    and creates nothing. A short array is padded with 0, as Go does; before API 1.42 it is dropped."""
    before = len(client.api.containers(all=True))
    field = "Go struct field HostConfig.HostConfig.ConsoleSize"
    for bad, words in (([-1, 5], f"cannot unmarshal number -1 into {field} of type uint"),
                       (["a", 1], f"cannot unmarshal string into {field} of type uint"),
                       ([1.5, 2], f"cannot unmarshal number 1.5 into {field} of type uint"),
                       (5, f"cannot unmarshal number into {field} of type [2]uint")):
        r = client.api._post_json(client.api._url("/containers/create"),  # type: ignore[attr-defined]
                                  data={"Image": "busybox", "HostConfig": {"ConsoleSize": bad}})
        assert (r.status_code, r.json()["message"]) == (400, f"invalid JSON: json: {words}")
    assert len(client.api.containers(all=True)) == before
    cid = client.api.create_container("busybox", ["true"], host_config={"ConsoleSize": [45]})["Id"]
    old = docker.APIClient(base_url=daemon.host, version="1.41", timeout=60)
    old_id = old.create_container("busybox", ["true"], tty=True, host_config={"ConsoleSize": [45, 123]})["Id"]
    try:
        assert client.api.inspect_container(cid)["HostConfig"]["ConsoleSize"] == [45, 0]
        assert client.api.inspect_container(old_id)["HostConfig"]["ConsoleSize"] == [0, 0]
    finally:
        client.api.remove_container(cid)
        client.api.remove_container(old_id)
