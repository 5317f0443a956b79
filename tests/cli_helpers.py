"""Running the ``berth`` CLI (and the docker CLI beside it) in tests."""

from __future__ import annotations

import os
import subprocess
import sys

BERTH = [sys.executable, "-m", "berth.cli.main"]


def berth_env(host: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "BERTH_"))}
    env["BERTH_HOST"] = host
    env.update(extra)
    return env


def berth(host: str, *args: str, input: bytes | None = None, env: dict[str, str] | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    r = subprocess.run([*BERTH, *args], input=input, capture_output=True, timeout=timeout,
                       env=env or berth_env(host), cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert b"Traceback" not in r.stderr, r.stderr.decode()
    return r


def ok(r: subprocess.CompletedProcess[bytes]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr.decode()}"
    return r.stdout.decode()
