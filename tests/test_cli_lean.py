"""The CLI's hot paths stay lean: `berth --help`, `berth version`, `berth ps` and `berth images`
import no module they do not need (start-up time is part of the CLI's interface, see
berth/cli/main.py). Each command runs as `python -X importtime -m berth.cli.main ...`, which
logs every module the process imports (even one whose import fails) to stderr."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.cli_helpers import berth_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Never on these paths: TLS, the typing machinery, the asyncio/HTTP stacks, third-party
# packages, and the click tree (fast.py parses these commands without click).
HEAVY = {
    "ssl", "_ssl", "typing", "dataclasses", "inspect", "asyncio", "concurrent", "threading", "logging",
    "subprocess", "http", "http.client", "email", "uuid", "tempfile", "shutil", "argparse", "sqlite3",
    "click", "aiohttp", "docker", "requests", "urllib3", "rich", "yaml",
    "berth.cli.app", "berth.cli.lazy", "berth.cli.errors", "berth.errors",
}
# Only the help text: no socket, no JSON, no time formatting, no API client.
HELP_ALSO_NOT = {"json", "_json", "socket", "_socket", "select", "selectors", "datetime", "_datetime",
                 "berth.cli.client", "berth.cli.streams", "berth.cli.fmt", "berth.cli.gotemplate", "berth.gotime"}


def imported(args: list[str], host: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "berth.cli.main", *args], capture_output=True,
                       text=True, timeout=60, env=berth_env(host), cwd=REPO)
    mods = set()
    other = []
    for line in r.stderr.splitlines():
        if line.startswith("import time:"):
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":  # the header line
                mods.add(name)
        else:
            other.append(line)
    assert "Traceback" not in r.stderr, r.stderr
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout, "\n".join(other)), mods


@pytest.fixture
def dead_socket(tmp_path: object) -> Iterator[str]:
    """A daemon that died: its socket file is there, nothing accepts on it."""
    path = os.path.join(str(tmp_path), "berth.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)  # bound, never listening: connect() is refused
    try:
        yield "unix://" + path
    finally:
        s.close()


def heavy_in(mods: set[str], banned: set[str]) -> set[str]:
    return {m for m in mods if m in banned or m.split(".")[0] in banned}


def test_help_imports_only_the_help_text(dead_socket: str) -> None:
    r, mods = imported(["--help"], dead_socket)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage: berth [OPTIONS] COMMAND [ARGS]...")
    assert "\n  ps " in r.stdout and "\n  run " in r.stdout  # the command list, from its stored short help
    assert r.stderr == ""
    assert "berth.cli.commands" in mods  # the log is read right: the module that holds the text is in it
    assert heavy_in(mods, HEAVY | HELP_ALSO_NOT) == set()
    assert {m for m in mods if m.startswith("berth")} <= {"berth", "berth.cli", "berth.cli.fast",
                                                          "berth.cli.commands"}


def test_version_against_a_dead_daemon_is_lean(dead_socket: str) -> None:
    r, mods = imported(["version"], dead_socket)
    assert r.returncode == 1
    assert r.stdout.startswith("Client:\n Version:")  # the client half, as docker prints it
    assert "Server:" not in r.stdout
    assert r.stderr.strip() == f"Cannot connect to the Berth daemon at {dead_socket}. Is berthd running?"
    assert {"berth.cli.client", "berth.cli.version", "socket"} <= mods
    assert heavy_in(mods, HEAVY) == set()


@pytest.mark.parametrize("cmd", [["ps"], ["ps", "-a", "--format", "{{.ID}}"], ["images", "-q"]])
def test_listing_commands_against_a_dead_daemon_are_lean(dead_socket: str, cmd: list[str]) -> None:
    r, mods = imported(cmd, dead_socket)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.strip() == f"Cannot connect to the Berth daemon at {dead_socket}. Is berthd running?"
    assert {"berth.cli.client", "berth.cli.rows"} <= mods
    assert heavy_in(mods, HEAVY) == set()


def test_a_tls_host_does_import_ssl() -> None:
    """The other side of the ssl assertion: ssl is loaded once a TLS host answers, so its absence
    above is the fast path's doing and the log would show it."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(30)

        def hang_up() -> None:  # a "daemon" that accepts and closes: the TLS handshake fails
            with contextlib.suppress(OSError):
                srv.accept()[0].close()

        t = threading.Thread(target=hang_up)
        t.start()
        try:
            r, mods = imported(["--tls", "version"], f"tcp://127.0.0.1:{srv.getsockname()[1]}")
        finally:
            t.join()
    assert r.returncode == 1
    assert "TLS handshake with tcp://127.0.0.1:" in r.stderr
    assert "ssl" in mods
