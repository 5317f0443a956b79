"""The berth CLI against a real berthd, with the docker CLI beside it for the shape of the output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
import time

import pytest

from tests.cli_helpers import berth, berth_env, ok
from tests.conftest import DOCKER_CLI, Daemon


def b(daemon: Daemon, *args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return berth(daemon.host, *args, **kw)  # type: ignore[arg-type]


def header(text: str) -> list[str]:
    return re.split(r"\s{2,}", text.splitlines()[0].strip())


@pytest.fixture
def two_running(daemon: Daemon) -> list[str]:
    ids = [ok(b(daemon, "run", "-d", "--name", f"cli-ps-{i}", "-l", f"idx={i}", "busybox", "sleep", "300")).strip()
           for i in range(2)]
    yield ids
    for i in ids:
        b(daemon, "rm", "-f", i)


def test_version_and_unreachable_daemon(daemon: Daemon, tmp_path: object) -> None:
    out = ok(b(daemon, "version"))
    assert "Client:" in out and "Server: Berth" in out and "API version:      1.45" in out
    assert ok(b(daemon, "version", "--format", "{{.Server.ApiVersion}}")).strip() == "1.45"
    assert ok(b(daemon, "--version")).startswith("Berth version ")
    assert ok(b(daemon, "-D", "-v")) == ok(b(daemon, "--version"))
    r = berth("unix:///nonexistent/berth.sock", "ps")
    assert r.returncode == 1
    assert r.stderr.decode().strip() == \
        "Cannot connect to the Berth daemon at unix:///nonexistent/berth.sock. Is berthd running?"
    # the default host, the same sentence with it
    env = berth_env("")
    del env["BERTH_HOST"]
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    r = berth("", "images", env=env)
    assert r.returncode == 1 and "unix:///nonexistent/docker.sock" in r.stderr.decode()
    # -H beats BERTH_HOST, which beats DOCKER_HOST
    env = berth_env("unix:///nonexistent/a.sock", DOCKER_HOST="unix:///nonexistent/b.sock")
    assert "a.sock" in berth("", "ps", env=env).stderr.decode()
    assert ok(berth("", "-H", daemon.host, "ps", "-q", env=env)) is not None


def test_ps_matches_docker(daemon: Daemon, two_running: list[str]) -> None:
    out = ok(b(daemon, "ps"))
    assert header(out) == ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert header(out) == header(daemon.cli("ps").stdout.decode())
    row = next(line for line in out.splitlines() if "cli-ps-0" in line)
    assert row.startswith(two_running[0][:12]) and '"sleep 300"' in row and "Up " in row
    assert sorted(ok(b(daemon, "ps", "-q")).split()) == sorted(daemon.cli("ps", "-q").stdout.decode().split())
    for fmt in ("{{.Names}} {{.State}}", "{{.ID}}\t{{.Label \"idx\"}}", "table {{.ID}}\t{{.Names}}",
                "{{json .Labels}}"):
        assert ok(b(daemon, "ps", "--format", fmt)) == daemon.cli("ps", "--format", fmt).stdout.decode(), fmt
    ours = [json.loads(line) for line in ok(b(daemon, "ps", "--format", "{{json .}}")).splitlines()]
    theirs = [json.loads(line) for line in daemon.cli("ps", "--format", "{{json .}}").stdout.decode().splitlines()]
    assert [sorted(x) for x in ours] == [sorted(x) for x in theirs]
    assert [x["Names"] for x in ours] == [x["Names"] for x in theirs]
    assert ok(b(daemon, "ps", "-a", "-n", "1", "-q")).split() == [two_running[1][:12]]
    assert ok(b(daemon, "ps", "--no-trunc", "-q", "-f", "name=cli-ps-1")).split() == [two_running[1]]
    sized = ok(b(daemon, "ps", "-s"))
    assert header(sized)[-1] == "SIZE"
    assert ok(b(daemon, "container", "ls", "-q")) == ok(b(daemon, "ps", "-q"))


def test_images_matches_docker(daemon: Daemon) -> None:
    ok(b(daemon, "tag", "busybox", "cli/tagged:v1"))
    try:
        out = ok(b(daemon, "images"))
        assert header(out) == header(daemon.cli("images").stdout.decode()) == \
            ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
        assert re.search(r"^cli/tagged\s+v1\s+[0-9a-f]{12}\s+.+ ago\s+[\d.]+[kM]?B$", out, re.M), out
        assert ok(b(daemon, "images", "-q")) == daemon.cli("images", "-q").stdout.decode()
        fmt = "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}"
        assert sorted(ok(b(daemon, "images", "--format", fmt)).splitlines()) == \
            sorted(daemon.cli("images", "--format", fmt).stdout.decode().splitlines())
        assert header(ok(b(daemon, "images", "--digests"))) == header(daemon.cli("images", "--digests").stdout.decode())
        assert "cli/tagged" in ok(b(daemon, "images", "cli/tagged"))
        assert "busybox" not in ok(b(daemon, "images", "cli/tagged"))
        assert ok(b(daemon, "image", "ls", "-q")) == ok(b(daemon, "images", "-q"))
    finally:
        assert "Untagged: cli/tagged:v1" in ok(b(daemon, "rmi", "cli/tagged:v1"))


def test_run_exit_codes_and_streams(daemon: Daemon) -> None:
    r = b(daemon, "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
    r = b(daemon, "run", "--rm", "busybox", "no-such-command")
    assert r.returncode == 127 and "not found" in r.stderr.decode()
    r = b(daemon, "run", "--rm", "busybox", "/etc/passwd")
    assert r.returncode == 126, r.stderr
    r = b(daemon, "run", "--rm", "no-such-image-xyz:1")
    assert r.returncode == 125 and "Unable to find image 'no-such-image-xyz:1' locally" in r.stderr.decode()
    assert ok(b(daemon, "run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z", input=b"piped\n")) == "PIPED\n"
    out = ok(b(daemon, "run", "--rm", "-e", "X=1", "-w", "/tmp", "-u", "123", "--hostname", "hh", "busybox",
               "sh", "-c", "echo $X $(pwd) $(id -u) $(hostname)"))
    assert out == "1 /tmp 123 hh\n"
    before = daemon.client().api.containers(all=True, quiet=True)
    ok(b(daemon, "run", "--rm", "busybox", "true"))
    assert daemon.client().api.containers(all=True, quiet=True) == before


def test_run_options_reach_the_container(daemon: Daemon, tmp_path: object) -> None:
    cid = ok(b(daemon, "run", "-d", "--name", "cli-opts", "-m", "64m", "--pids-limit", "50", "--read-only",
               "--cap-drop", "ALL", "--restart", "on-failure:2", "-v", "cli-vol:/data", "--label", "a=b",
               "--entrypoint", "sleep", "busybox", "300")).strip()
    try:
        assert re.fullmatch(r"[0-9a-f]{64}", cid)
        info = daemon.client().api.inspect_container(cid)
        hc = info["HostConfig"]
        assert hc["Memory"] == 64 << 20 and hc["PidsLimit"] == 50 and hc["ReadonlyRootfs"] is True
        assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
        assert info["Config"]["Entrypoint"] == ["sleep"] and info["Config"]["Labels"]["a"] == "b"
        assert any(m.get("Name") == "cli-vol" for m in info["Mounts"])
    finally:
        ok(b(daemon, "rm", "-f", "-v", "cli-opts"))
        ok(b(daemon, "volume", "rm", "cli-vol"))


def test_lifecycle_verbs(daemon: Daemon) -> None:
    api = daemon.client().api
    assert ok(b(daemon, "create", "--name", "cli-life", "busybox", "sleep", "300")).strip()
    try:
        assert ok(b(daemon, "start", "cli-life")) == "cli-life\n"
        assert api.inspect_container("cli-life")["State"]["Running"]
        assert ok(b(daemon, "pause", "cli-life")) == "cli-life\n"
        assert api.inspect_container("cli-life")["State"]["Paused"]
        assert ok(b(daemon, "unpause", "cli-life")) == "cli-life\n"
        ok(b(daemon, "rename", "cli-life", "cli-life2"))
        assert api.inspect_container("cli-life2")["Name"] == "/cli-life2"
        assert ok(b(daemon, "kill", "-s", "KILL", "cli-life2")) == "cli-life2\n"
        assert ok(b(daemon, "wait", "cli-life2")) == "137\n"
        assert ok(b(daemon, "restart", "-t", "1", "cli-life2")) == "cli-life2\n"
        assert api.inspect_container("cli-life2")["State"]["Running"]
        assert ok(b(daemon, "stop", "-t", "1", "cli-life2")) == "cli-life2\n"
        r = b(daemon, "rm", "no-such-ctr", "cli-life2")
        assert r.returncode == 1 and r.stdout == b"cli-life2\n"
        assert "Error response from daemon: No such container: no-such-ctr" in r.stderr.decode()
    finally:
        b(daemon, "rm", "-f", "cli-life", "cli-life2")


def test_exec_logs_top_inspect_diff(daemon: Daemon) -> None:
    ok(b(daemon, "run", "-d", "--name", "cli-ex", "busybox", "sh", "-c",
         "echo one; echo two >&2; touch /made; sleep 300"))
    try:
        r = b(daemon, "exec", "-e", "Z=9", "-w", "/etc", "cli-ex", "sh", "-c", "echo $Z $(pwd); exit 4")
        assert (r.returncode, r.stdout) == (4, b"9 /etc\n")
        assert ok(b(daemon, "exec", "-i", "cli-ex", "cat", input=b"stdin-data")) == "stdin-data"
        assert b(daemon, "exec", "-d", "cli-ex", "touch", "/bg").returncode == 0
        deadline = time.monotonic() + 10
        r = b(daemon, "logs", "cli-ex")
        while r.stdout != b"one\n" and time.monotonic() < deadline:
            time.sleep(0.1)
            r = b(daemon, "logs", "cli-ex")
        assert (r.stdout, r.stderr) == (b"one\n", b"two\n")
        assert ok(b(daemon, "logs", "--tail", "1", "-t", "cli-ex")) == ""
        assert re.match(r"^\d{4}-\d\d-\d\dT", b(daemon, "logs", "-t", "cli-ex").stdout.decode())
        top = ok(b(daemon, "top", "cli-ex"))
        assert header(top)[0] == "UID" and "sleep 300" in top
        assert ok(b(daemon, "inspect", "--format", "{{.State.Status}} {{.Name}}", "cli-ex")) == "running /cli-ex\n"
        arr = json.loads(ok(b(daemon, "inspect", "cli-ex", "busybox")))
        assert [x["Id"][:7] for x in arr][1] == "sha256:"
        assert ok(b(daemon, "container", "inspect", "-f", "{{json .Config.Cmd}}", "cli-ex")).startswith('["sh"')
        r = b(daemon, "inspect", "cli-ex", "nope-nope")
        assert r.returncode == 1 and r.stderr.decode().strip() == "Error: No such object: nope-nope"
        assert len(json.loads(r.stdout)) == 1
        assert "A /made" in ok(b(daemon, "diff", "cli-ex")).splitlines()
        stats = ok(b(daemon, "stats", "--no-stream", "cli-ex"))
        assert header(stats) == ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O",
                                 "BLOCK I/O", "PIDS"]
    finally:
        b(daemon, "rm", "-f", "cli-ex")


def test_cp_both_ways_and_hostile_links(daemon: Daemon, tmp_path: object) -> None:
    base = str(tmp_path)
    ok(b(daemon, "run", "-d", "--name", "cli-cp", "busybox", "sh", "-c",
         "mkdir -p /d/sub && echo inner > /d/sub/f && ln -s /etc/passwd /d/abs && sleep 300"))
    try:
        src = os.path.join(base, "up.txt")
        with open(src, "w") as f:
            f.write("uploaded\n")
        ok(b(daemon, "cp", src, "cli-cp:/tmp/renamed.txt"))
        assert ok(b(daemon, "exec", "cli-cp", "cat", "/tmp/renamed.txt")) == "uploaded\n"
        ok(b(daemon, "cp", src, "cli-cp:/tmp"))
        assert ok(b(daemon, "exec", "cli-cp", "cat", "/tmp/up.txt")) == "uploaded\n"
        out = os.path.join(base, "out")
        os.mkdir(out)
        ok(b(daemon, "cp", "cli-cp:/d/sub/f", os.path.join(out, "g")))
        assert open(os.path.join(out, "g")).read() == "inner\n"
        ok(b(daemon, "cp", "cli-cp:/d/sub", out))
        assert open(os.path.join(out, "sub", "f")).read() == "inner\n"
        # a symlink to an absolute path out of a container is not written as a link out of the destination
        r = b(daemon, "cp", "cli-cp:/d", os.path.join(base, "whole"))
        assert not os.path.islink(os.path.join(base, "whole", "abs")) or \
            not os.path.isabs(os.readlink(os.path.join(base, "whole", "abs")))
        assert r.returncode in (0, 1)
        # a tar to stdout
        r = b(daemon, "cp", "cli-cp:/d/sub", "-")
        with tarfile.open(fileobj=__import__("io").BytesIO(r.stdout)) as tf:
            assert "sub/f" in tf.getnames()
    finally:
        b(daemon, "rm", "-f", "cli-cp")


def test_commit_export_save_load_import_history(daemon: Daemon, tmp_path: object) -> None:
    base = str(tmp_path)
    ok(b(daemon, "run", "--name", "cli-commit", "busybox", "sh", "-c", "echo hi > /committed"))
    try:
        iid = ok(b(daemon, "commit", "-m", "msg", "-c", "ENV K=V", "cli-commit", "cli/committed:1")).strip()
        assert iid.startswith("sha256:")
        assert ok(b(daemon, "run", "--rm", "cli/committed:1", "sh", "-c", "cat /committed; echo $K")) == "hi\nV\n"
        hist = ok(b(daemon, "history", "cli/committed:1"))
        assert header(hist) == ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"] and "msg" in hist
        exp = os.path.join(base, "exp.tar")
        ok(b(daemon, "export", "-o", exp, "cli-commit"))
        with tarfile.open(exp) as tf:
            assert "committed" in tf.getnames()
        ok(b(daemon, "import", exp, "cli/imported:1")).startswith("sha256:")
        assert ok(b(daemon, "run", "--rm", "cli/imported:1", "/bin/cat", "/committed")) == "hi\n"
        saved = os.path.join(base, "saved.tar")
        ok(b(daemon, "save", "-o", saved, "cli/committed:1"))
        ok(b(daemon, "rmi", "cli/committed:1"))
        assert "Loaded image: cli/committed:1" in ok(b(daemon, "load", "-i", saved))
        with open(saved, "rb") as f:
            ok(b(daemon, "rmi", "cli/committed:1"))
            assert "Loaded image: cli/committed:1" in ok(b(daemon, "load", input=f.read()))
        r = b(daemon, "load", "-i", exp)  # a tar that is not an image archive
        assert r.returncode == 1 and r.stderr
    finally:
        b(daemon, "rm", "-f", "cli-commit")
        b(daemon, "rmi", "-f", "cli/committed:1", "cli/imported:1")


def test_volume_commands(daemon: Daemon) -> None:
    assert ok(b(daemon, "volume", "create", "--label", "k=v", "cli-v1")) == "cli-v1\n"
    try:
        out = ok(b(daemon, "volume", "ls"))
        assert header(out) == header(daemon.cli("volume", "ls").stdout.decode()) == ["DRIVER", "VOLUME NAME"]
        assert re.search(r"^local\s+cli-v1$", out, re.M)
        assert "cli-v1" in ok(b(daemon, "volume", "ls", "-q")).split()
        assert ok(b(daemon, "volume", "ls", "-q", "-f", "label=k=v")) == "cli-v1\n"
        assert ok(b(daemon, "volume", "inspect", "-f", "{{.Labels.k}}", "cli-v1")) == "v\n"
        r = b(daemon, "volume", "rm", "cli-v1", "cli-nope")
        assert r.returncode == 1 and r.stdout == b"cli-v1\n"
    finally:
        b(daemon, "volume", "rm", "cli-v1")


def test_system_commands(daemon: Daemon) -> None:
    info = ok(b(daemon, "info"))
    assert "Server Version: " in info and "Storage Driver: overlay" in info
    assert ok(b(daemon, "info", "--format", "{{.Driver}}")) == "overlay\n"
    assert ok(b(daemon, "system", "info", "-f", "{{.Driver}}")) == "overlay\n"
    df = ok(b(daemon, "system", "df"))
    assert header(df) == header(daemon.cli("system", "df").stdout.decode())
    since = str(int(time.time()) - 1)
    ok(b(daemon, "run", "--rm", "--name", "cli-ev", "busybox", "true"))
    ev = ok(b(daemon, "events", "--since", since, "--until", str(int(time.time()) + 1), "-f", "container=cli-ev",
              "--format", "{{.Action}}"))
    assert "start" in ev.split() and "die" in ev.split()
    ok(b(daemon, "create", "--name", "cli-prune", "busybox", "true"))
    out = ok(b(daemon, "system", "prune", "-f"))
    assert "Total reclaimed space:" in out
    assert b(daemon, "inspect", "cli-prune").returncode == 1
    assert "Deleted Containers" not in ok(b(daemon, "container", "prune", "-f"))


def test_network_ls(daemon: Daemon) -> None:
    out = ok(b(daemon, "network", "ls"))
    assert header(out) == header(daemon.cli("network", "ls").stdout.decode()) == \
        ["NETWORK ID", "NAME", "DRIVER", "SCOPE"]
    assert sorted(ok(b(daemon, "network", "ls", "--format", "{{.Name}}")).split()) == \
        sorted(daemon.cli("network", "ls", "--format", "{{.Name}}").stdout.decode().split())


def test_network_lifecycle(daemon: Daemon) -> None:
    nid = ok(b(daemon, "network", "create", "--subnet", "10.89.7.0/24", "--label", "k=v", "cli-net")).strip()
    try:
        assert ok(b(daemon, "network", "inspect", "-f", "{{.Name}} {{.Labels.k}}", "cli-net")) == "cli-net v\n"
        ok(b(daemon, "run", "-d", "--name", "cli-net-c", "busybox", "sleep", "300"))
        ok(b(daemon, "network", "connect", "--alias", "al", "cli-net", "cli-net-c"))
        assert "cli-net" in ok(b(daemon, "inspect", "-f", "{{json .NetworkSettings.Networks}}", "cli-net-c"))
        ok(b(daemon, "network", "disconnect", "cli-net", "cli-net-c"))
        assert nid[:12] in ok(b(daemon, "network", "ls", "-q"))
    finally:
        b(daemon, "rm", "-f", "cli-net-c")
        b(daemon, "network", "rm", "cli-net")
    assert "cli-net" not in ok(b(daemon, "network", "ls"))


def test_build(daemon: Daemon, tmp_path: object) -> None:
    ctx = str(tmp_path)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM busybox\nCOPY . /ctx/\nRUN ls /ctx > /listing\n")
    with open(os.path.join(ctx, ".dockerignore"), "w") as f:
        f.write("secret*\n")
    for name in ("keep.txt", "secret.key"):
        with open(os.path.join(ctx, name), "w") as f:
            f.write(name)
    out = ok(b(daemon, "build", "-t", "cli/built:1", ctx))
    assert "Step 1/3 : FROM busybox" in out
    listing = ok(b(daemon, "run", "--rm", "cli/built:1", "cat", "/listing")).split()
    assert "keep.txt" in listing and "secret.key" not in listing
    iid = ok(b(daemon, "build", "-q", ctx)).strip()
    assert iid.startswith("sha256:")
    # reproducible by default: the same context builds to the same ID; --timestamps=now stamps the time
    assert ok(b(daemon, "build", "-q", "--no-cache", ctx)).strip() == iid
    now_id = ok(b(daemon, "build", "-q", "--no-cache", "--timestamps=now", ctx)).strip()
    assert now_id != iid and not daemon.client().images.get(now_id).attrs["Created"].startswith("1970")
    b(daemon, "rmi", "-f", "cli/built:1")


def test_completion_names_from_daemon(daemon: Daemon) -> None:
    ok(b(daemon, "create", "--name", "cli-complete-me", "busybox", "true"))
    try:
        script = ok(b(daemon, "completion", "bash"))
        assert "_BERTH_COMPLETE" in script and "complete " in script
        assert "compdef" in ok(b(daemon, "completion", "zsh"))
        env = berth_env(daemon.host, _BERTH_COMPLETE="bash_complete", COMP_WORDS="berth rm cli-comp", COMP_CWORD="2")
        out = ok(berth(daemon.host, env=env))
        assert "cli-complete-me" in out
        env.update(COMP_WORDS="berth ima", COMP_CWORD="1")
        assert "images" in ok(berth(daemon.host, env=env))
        env.update(COMP_WORDS="berth rmi bus", COMP_CWORD="2")
        assert "busybox:latest" in ok(berth(daemon.host, env=env))
    finally:
        b(daemon, "rm", "cli-complete-me")


def test_everyday_commands_beside_docker(daemon: Daemon) -> None:
    """The same commands through both CLIs give the same results."""
    if DOCKER_CLI is None:
        pytest.skip("the docker CLI is not installed")
    ok(b(daemon, "run", "-d", "--name", "cli-side", "busybox", "sh", "-c", "echo side; sleep 300"))
    try:
        assert daemon.cli("inspect", "-f", "{{.State.Status}}", "cli-side").stdout == \
            b(daemon, "inspect", "-f", "{{.State.Status}}", "cli-side").stdout
        assert daemon.cli("exec", "cli-side", "echo", "x").stdout == b(daemon, "exec", "cli-side", "echo", "x").stdout
        assert daemon.cli("logs", "cli-side").stdout == b(daemon, "logs", "cli-side").stdout
        assert daemon.cli("port", "cli-side").stdout == b(daemon, "port", "cli-side").stdout
    finally:
        b(daemon, "rm", "-f", "cli-side")
