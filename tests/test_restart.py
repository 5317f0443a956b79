"""Restart policies: no, always, unless-stopped, on-failure[:N]; back-off; across berthd restarts."""

from __future__ import annotations

import time

import docker
import pytest

from tests.conftest import Daemon


@pytest.fixture(scope="module")
def monitor(each_monitor: str) -> str:
    """This module's daemon runs once with berth-monitor and once with conmon."""
    return each_monitor


def _wait_for(pred, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_on_failure_with_limit(daemon: Daemon) -> None:
    daemon.cli("run", "-d", "--name", "flaky", "--restart", "on-failure:3", "busybox", "sh", "-c",
               "echo run; exit 1")
    c = daemon.client()
    assert _wait_for(lambda: c.api.inspect_container("flaky")["RestartCount"] == 3
                     and c.api.inspect_container("flaky")["State"]["Status"] == "exited")
    time.sleep(1.0)  # no fourth run
    info = c.api.inspect_container("flaky")
    assert info["RestartCount"] == 3 and info["State"]["ExitCode"] == 1
    assert daemon.cli("logs", "flaky").stdout == b"run\n" * 4
    daemon.cli("rm", "flaky")


def test_on_failure_does_not_restart_success(client: docker.DockerClient) -> None:
    ct = client.containers.run("busybox", ["true"], detach=True, restart_policy={"Name": "on-failure"})
    ct.wait()
    time.sleep(0.5)
    assert client.api.inspect_container(ct.id)["RestartCount"] == 0
    ct.remove()


def test_always_restarts_until_stopped(client: docker.DockerClient) -> None:
    ct = client.containers.run("busybox", ["sh", "-c", "sleep 0.2"], detach=True, restart_policy={"Name": "always"})
    assert _wait_for(lambda: client.api.inspect_container(ct.id)["RestartCount"] >= 2)
    ct.stop(timeout=1)
    ct.reload()
    assert ct.status == "exited"
    n = ct.attrs["RestartCount"]
    time.sleep(1.0)
    ct.reload()
    assert ct.status == "exited" and ct.attrs["RestartCount"] == n  # a manual stop holds
    ct.remove()


def test_bad_restart_policies_are_400(client: docker.DockerClient) -> None:
    for policy in ({"Name": "sometimes"}, {"Name": "always", "MaximumRetryCount": 2}):
        with pytest.raises(docker.errors.APIError) as e:
            client.api.create_container("busybox", ["true"], host_config={"RestartPolicy": policy})
        assert e.value.status_code == 400 and "RestartPolicy" in str(e.value.explanation)
    with pytest.raises(docker.errors.APIError) as e:
        client.api.create_container("busybox", ["true"], host_config={"RestartPolicy": {"Name": "always"},
                                                                     "AutoRemove": True})
    assert e.value.status_code == 400


def test_policies_after_berthd_restart(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    c = d.client()
    always = c.containers.run("busybox", ["sleep", "300"], detach=True, restart_policy={"Name": "always"})
    unless = c.containers.run("busybox", ["sleep", "300"], detach=True,
                              restart_policy={"Name": "unless-stopped"})
    unless.stop(timeout=0)
    always.stop(timeout=0)
    d.stop()
    d.start()
    c = d.client()
    assert c.api.inspect_container(always.id)["State"]["Status"] == "running"
    assert c.api.inspect_container(unless.id)["State"]["Status"] == "exited"
    c.api.remove_container(always.id, force=True)
    c.api.remove_container(unless.id)


def test_docker_restart_keeps_an_rm_container(daemon: Daemon) -> None:
    """As Docker: the stop inside `docker restart` is not the end of a --rm container; its own exit
    afterwards still removes it."""
    c = daemon.client()
    daemon.cli("run", "-d", "--rm", "--name", "rmrestart", "busybox", "sh", "-c",
               "echo up; trap 'exit 0' TERM; while [ ! -e /stop ]; do sleep 0.1; done")
    first = c.api.inspect_container("rmrestart")["State"]["StartedAt"]
    daemon.cli("restart", "-t", "5", "rmrestart")
    info = c.api.inspect_container("rmrestart")
    assert info["State"]["Running"] and info["State"]["StartedAt"] != first
    daemon.cli("exec", "rmrestart", "touch", "/stop")
    assert _wait_for(lambda: not c.api.containers(all=True, filters={"name": "rmrestart"}))
