"""Bad input to every command: usage help and exit 125 for CLI errors, the flag named for a wrong
value, Docker's wording for daemon errors, and never a Python traceback."""

from __future__ import annotations

import pytest

from berth.cli.commands import COMMANDS
from berth.cli.groups import CONTAINER, IMAGE, SYSTEM
from tests.cli_helpers import berth, ok
from tests.conftest import Daemon

NETWORK = ["ls", "list", "create", "rm", "remove", "inspect", "connect", "disconnect", "prune"]
VOLUME = ["create", "ls", "list", "inspect", "rm", "remove", "prune", "export", "import"]
PASSTHROUGH = {"check", "registry"}  # their own argument parsers, with their own exit codes


def all_commands() -> list[list[str]]:
    cmds = [[c] for c in COMMANDS if c not in PASSTHROUGH and c not in ("container", "image", "system", "network",
                                                                         "volume")]
    cmds += [["container", c] for c in CONTAINER] + [["image", c] for c in IMAGE] + [["system", c] for c in SYSTEM]
    cmds += [["network", c] for c in NETWORK] + [["volume", c] for c in VOLUME]
    return cmds


@pytest.mark.parametrize("cmd", all_commands(), ids=" ".join)
def test_unknown_flag_gives_usage_and_125(daemon: Daemon, cmd: list[str]) -> None:
    r = berth(daemon.host, *cmd, "--no-such-flag-xyz", "arg1", timeout=30)
    err = r.stderr.decode()
    assert r.returncode == 125, (r.returncode, err)
    assert err.startswith("unknown flag: --no-such-flag-xyz"), err
    assert f"Usage:  berth {' '.join(cmd)}" in err and f"Run 'berth {' '.join(cmd)} --help'" in err


@pytest.mark.parametrize("cmd", all_commands(), ids=" ".join)
def test_help_of_every_command(daemon: Daemon, cmd: list[str]) -> None:
    r = berth(daemon.host, *cmd, "--help", timeout=30)
    assert r.returncode == 0 and b"Usage: berth " + " ".join(cmd).encode() in r.stdout


@pytest.mark.parametrize("cmd", all_commands(), ids=" ".join)
def test_garbage_arguments_never_trace(daemon: Daemon, cmd: list[str]) -> None:
    """Names that exist nowhere, hostile-looking strings: an error line, not a traceback."""
    if cmd[-1] in ("events", "stats", "attach", "wait", "logs", "load", "import", "prune", "login", "build"):
        args = ["../../../etc/passwd"]  # stream-y commands: one bad name is enough to fail fast
    else:
        args = ["../../../etc/passwd", "x" * 300, "%00", "a:b:c:d"]
    r = berth(daemon.host, *cmd, *args, input=b"", timeout=60)
    assert r.returncode != 0 or cmd[-1] in ("ls", "list", "ps", "images", "history", "df", "info", "version",
                                            "completion"), (cmd, r.stdout, r.stderr)


@pytest.mark.parametrize("args,flag", [
    (["run", "-m", "lots", "busybox"], "--memory"),
    (["run", "--cpus", "many", "busybox"], "--cpus"),
    (["run", "-p", "99999:80", "busybox"], "--publish"),
    (["run", "-p", "a:b:c:d", "busybox"], "--publish"),
    (["run", "--restart", "sometimes", "busybox"], "--restart"),
    (["run", "--health-interval", "often", "busybox"], "--health-interval"),
    (["run", "--pull", "maybe", "busybox"], "--pull"),
    (["run", "--mount", "type=bind,nosuch=1,target=/x", "busybox"], "--mount"),
    (["run", "--ulimit", "nofile=a:b", "busybox"], "--ulimit"),
    (["run", "--log-opt", "novalue", "busybox"], "--log-opt"),
    (["run", "--detach-keys", "ctrl-1", "busybox"], "--detach-keys"),
    (["ps", "-n", "abc"], "--last"),
    (["ps", "-f", "nofilter"], "--filter"),
    (["stop", "-t", "soon", "x"], "--time"),
    (["update", "-m", "x1", "c"], "--memory"),
    (["inspect", "--type", "thing", "x"], "--type"),
    (["logs", "--tail", "many", "x"], "--tail"),
])
def test_wrong_flag_values_name_the_flag(daemon: Daemon, args: list[str], flag: str) -> None:
    r = berth(daemon.host, *args, timeout=30)
    assert r.returncode == 125, r.stderr
    assert flag in r.stderr.decode()


def test_unknown_command_and_missing_arguments(daemon: Daemon) -> None:
    r = berth(daemon.host, "frobnicate")
    assert r.returncode == 125 and "'frobnicate' is not a berth command" in r.stderr.decode()
    r = berth(daemon.host, "container", "frobnicate")
    assert r.returncode == 125 and "is not a berth container command" in r.stderr.decode()
    for args in (["run"], ["rm"], ["tag", "busybox"], ["exec", "x"], ["cp", "a"]):
        r = berth(daemon.host, *args)
        assert r.returncode == 125 and "Usage:" in r.stderr.decode(), args
    r = berth(daemon.host, "-H", "ftp://nowhere", "ps")
    assert r.returncode == 125 and "invalid host" in r.stderr.decode()


def test_daemon_errors_in_docker_wording_and_nothing_changes(daemon: Daemon) -> None:
    before = daemon.client().api.containers(all=True, quiet=True)
    r = berth(daemon.host, "run", "--name", "bad name!", "busybox", "true")
    assert r.returncode == 125 and "Error response from daemon" in r.stderr.decode()
    r = berth(daemon.host, "run", "--rm", "busybox", "no-such-binary")
    assert r.returncode == 127
    assert daemon.client().api.containers(all=True, quiet=True) == before
    r = berth(daemon.host, "volume", "create", "bad/name")
    assert r.returncode == 1 and r.stderr.decode().startswith("Error response from daemon:")
    r = berth(daemon.host, "ps", "--format", "{{.Nope")
    assert r.returncode == 1 and "template parsing error" in r.stderr.decode()
    r = berth(daemon.host, "ps", "-f", "bogus=1")
    assert r.returncode == 1 and r.stderr.decode().startswith("Error response from daemon:")
    assert ok(berth(daemon.host, "ps", "-q")) is not None
