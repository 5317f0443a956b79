"""`docker run --rm` of a container that cannot start: the CLI waits for its removal (condition
`removed`), so the daemon must remove it after the failed start, as Docker does."""

from __future__ import annotations

import pytest

from tests.conftest import Daemon


@pytest.mark.parametrize("argv, code", [(["nosuchcmd"], 127), (["/etc/passwd"], 126)])
def test_run_rm_of_a_command_that_cannot_start(daemon: Daemon, argv: list[str], code: int) -> None:
    before = {c["Id"] for c in daemon.client().api.containers(all=True)}
    r = daemon.cli("run", "--rm", "busybox", *argv, check=False, timeout=30)
    assert r.returncode == code, r.stderr
    assert b"Traceback" not in r.stderr and r.stderr.strip()
    after = {c["Id"] for c in daemon.client().api.containers(all=True)}
    assert after == before  # removed, not left in Created


def test_run_rm_with_a_missing_volume_subpath_reports_and_removes(daemon: Daemon) -> None:
    c = daemon.client()
    vol = c.volumes.create()
    try:
        r = daemon.cli("run", "--rm", "--mount", f"type=volume,src={vol.name},dst=/m,volume-subpath=nope",
                       "busybox", "true", check=False, timeout=30)
        assert r.returncode == 125 and b"subpath does not exist" in r.stderr, r.stderr
        assert not [x for x in c.api.containers(all=True) if any(m.get("Name") == vol.name
                                                                 for m in x.get("Mounts") or [])]
    finally:
        vol.remove(force=True)
