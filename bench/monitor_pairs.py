"""The start path with each container monitor, side by side with the bare runtime in one run.

Two private berthds (``--monitor berth`` and ``--monitor conmon``, started by run_bench.py) and the
bare ``crun run`` floor are timed in alternating rounds (the two monitors swap order each round), so
load drifts hit all three alike; ratios are taken against the floor of the same rounds.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

PAIRS_MIN = 20
FLOOR = "crun run (floor, paired)"


def figure_name(kind: str) -> str:
    return f"{kind} monitor: run --rm (paired)"


def measure(n: int, docker_cli: str, hosts: dict[str, str],
            floor_once: Callable[[int], float]) -> dict[str, list[float]]:
    """ms samples of ``docker run --rm --network none busybox true`` per monitor kind (``hosts``:
    kind -> DOCKER_HOST) and of ``crun run``, at least PAIRS_MIN rounds after two warm-up rounds."""
    argv = [docker_cli, "run", "--rm", "--network", "none", "busybox", "true"]
    envs = {k: {**os.environ, "DOCKER_HOST": h, "DOCKER_CLI_HINTS": "false"} for k, h in hosts.items()}
    out: dict[str, list[float]] = {FLOOR: [], **{figure_name(k): [] for k in hosts}}
    kinds = list(hosts)
    for i in range(-2, max(PAIRS_MIN, n)):
        floor_ms = floor_once(10_000 + i)
        got: dict[str, float] = {}
        for k in (kinds if i % 2 == 0 else kinds[::-1]):
            t0 = time.perf_counter()
            subprocess.run(argv, env=envs[k], check=True, capture_output=True, timeout=60)
            got[k] = (time.perf_counter() - t0) * 1000
        if i >= 0:
            out[FLOOR].append(floor_ms)
            for k, ms in got.items():
                out[figure_name(k)].append(ms)
    return out
