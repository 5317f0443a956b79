"""The everyday commands of the berth CLI against a real dockerd (when installed): a private one on
its own socket, data root, exec root and bridge, without iptables; stopped by its PID."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator

import docker
import pytest

from tests.cli_helpers import berth, berth_env, ok
from tests.conftest import mounts_under

DOCKERD = shutil.which("dockerd")


@pytest.fixture(scope="module")
def dockerd(busybox_tar: str) -> Iterator[str]:
    if DOCKERD is None:
        pytest.skip("dockerd is not installed")
    root = tempfile.mkdtemp(prefix="bcd-", dir="/tmp")  # short: the socket path has a 107-byte limit
    host = f"unix://{root}/d.sock"
    log = open(os.path.join(root, "log"), "wb")  # noqa: SIM115
    # A bridge of its own: with --bridge none, dockerd's start-up deletes the host's docker0, which
    # belongs to the machine's own dockerd. (A network namespace of its own would keep it from the
    # registry on the host's loopback.)
    bridge = "bcd" + os.urandom(4).hex()
    subprocess.run(["ip", "link", "add", "name", bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", f"198.18.{os.getpid() % 250}.1/24", "dev", bridge], check=True)
    proc = subprocess.Popen([DOCKERD, "-H", host, "--data-root", f"{root}/data", "--exec-root", f"{root}/x",
                             "--pidfile", f"{root}/d.pid", "--bridge", bridge, "--iptables=false"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.skip(f"dockerd did not start (exit {proc.returncode})")
            try:  # the client asks for the API version as it is made: not before the socket exists
                client = docker.DockerClient(base_url=host, timeout=60)
                if client.ping():
                    break
            except Exception:
                if time.monotonic() > deadline:
                    pytest.skip("dockerd did not answer within 60 s")
                time.sleep(0.2)
        with open(busybox_tar, "rb") as f:
            list(client.api.load_image(f.read()))
        yield host
        for c in client.api.containers(all=True, quiet=True):
            client.api.remove_container(c["Id"], force=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        for m in mounts_under(root):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_everyday_commands_against_dockerd(dockerd: str, tmp_path: object) -> None:
    h = dockerd
    assert "Server: " in ok(berth(h, "version"))
    r = berth(h, "run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
    assert berth(h, "run", "--rm", "--network", "none", "busybox", "no-such-cmd").returncode == 127
    cid = ok(berth(h, "run", "-d", "--network", "none", "--name", "cli-dd", "busybox", "sh", "-c",
                   "echo logged; sleep 300")).strip()
    try:
        assert cid[:12] in ok(berth(h, "ps", "-q"))
        assert ok(berth(h, "ps", "--format", "{{.Names}} {{.State}}")) == "cli-dd running\n"
        assert "busybox" in ok(berth(h, "images"))
        r = berth(h, "exec", "cli-dd", "sh", "-c", "echo in-exec; exit 2")
        assert (r.returncode, r.stdout) == (2, b"in-exec\n")
        deadline = time.monotonic() + 10
        while ok(berth(h, "logs", "cli-dd")) != "logged\n" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ok(berth(h, "logs", "cli-dd")) == "logged\n"
        assert ok(berth(h, "inspect", "-f", "{{.State.Running}}", "cli-dd")) == "true\n"
    finally:
        assert ok(berth(h, "rm", "-f", "cli-dd")) == "cli-dd\n"
    ctx = os.path.join(str(tmp_path), "ctx")
    os.makedirs(ctx)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM busybox\nCOPY . /ctx/\nRUN ls /ctx > /listing\n")
    with open(os.path.join(ctx, ".dockerignore"), "w") as f:
        f.write("*.secret\n")
    for name in ("kept.txt", "x.secret"):
        with open(os.path.join(ctx, name), "w") as f:
            f.write(name)
    out = ok(berth(h, "build", "-t", "cli-dd/built:1", ctx))
    assert "Step 3/3 : RUN ls /ctx > /listing" in out and "Successfully tagged cli-dd/built:1" in out
    listing = ok(berth(h, "run", "--rm", "--network", "none", "cli-dd/built:1", "cat", "/listing")).split()
    assert "kept.txt" in listing and "x.secret" not in listing
    assert ok(berth(h, "build", "-q", "-t", "cli-dd/built:2", ctx)).strip().startswith("sha256:")
    assert "Untagged: cli-dd/built:1" in ok(berth(h, "rmi", "cli-dd/built:1"))
    ok(berth(h, "rmi", "cli-dd/built:2"))


def test_push_pull_against_dockerd(dockerd: str, tmp_path: object) -> None:
    from tests.test_registry_e2e import Reg

    reg = Reg(None)
    env = berth_env(dockerd, DOCKER_CONFIG=os.path.join(str(tmp_path), "cfg"))
    ref = f"{reg.addr}/cli-dd/pushed:1"
    try:
        ok(berth(dockerd, "tag", "busybox", ref, env=env))
        out = ok(berth(dockerd, "push", ref, env=env))
        assert out.strip().splitlines()[-1].startswith("1: digest: sha256:")
        ok(berth(dockerd, "rmi", ref, env=env))
        out = ok(berth(dockerd, "pull", ref, env=env))
        assert out.strip().splitlines()[-1] == ref
    finally:
        berth(dockerd, "rmi", "-f", ref, env=env)
        reg.close()
