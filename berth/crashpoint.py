"""Test-only crash points: make berthd SIGKILL itself at a named point of an operation.

``BERTHD_TEST_CRASH_AT=name[,name…]`` in berthd's environment (read once, at import) arms
the named points; ``hit(name)`` then kills the daemon on the spot, as a power cut or an
OOM kill would, so the crash tests can stop it exactly between two steps instead of
racing a timer. Unset (always, outside the tests) every ``hit`` is a set lookup.

Points: ``after-runtime-create`` (the monitor exists, with conmon the container's init too,
``runtime start`` not yet run), ``after-runtime-start`` (the container runs, not yet recorded),
``commit-after-extract`` (a commit's layer is unpacked, not yet recorded),
``volume-rm-after-db`` (a volume's record is gone, its directory not yet).
"""

from __future__ import annotations

import os
import signal

ENV = "BERTHD_TEST_CRASH_AT"
_armed = frozenset(x.strip() for x in os.environ.get(ENV, "").split(",") if x.strip())


def hit(name: str) -> None:
    if name in _armed:
        os.kill(os.getpid(), signal.SIGKILL)
