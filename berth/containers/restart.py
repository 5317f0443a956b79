"""Restart policies (no, on-failure[:N], always, unless-stopped) and Docker's back-off.

The lifecycle asks ``wanted`` when a container exits and ``schedule``s the restart; a timer
later calls back into the lifecycle (``restart``), which starts the container under its lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from berth.containers.store import Container
from berth.containers.tasks import TaskGroup

MAX_DELAY = 60.0


def policy_name(c: Container) -> str:
    return (c.host_config.get("RestartPolicy") or {}).get("Name") or "no"


def wanted(c: Container) -> bool:
    """Whether the policy restarts ``c`` after the exit just recorded."""
    name = policy_name(c)
    if c.state.ManuallyStopped or name == "no":
        return False
    if name == "on-failure":
        limit = (c.host_config.get("RestartPolicy") or {}).get("MaximumRetryCount") or 0
        return c.state.ExitCode != 0 and (limit <= 0 or c.restart_count < limit)
    return name in ("always", "unless-stopped")


def start_with_daemon(c: Container) -> bool:
    """At daemon start: "always" restarts even after a manual stop, "unless-stopped" unless stopped by hand."""
    name = policy_name(c)
    return c.state.Status == "exited" and bool(c.state.StartedTs) and (
        name == "always" or (name == "unless-stopped" and not c.state.ManuallyStopped))


class RestartPolicies:
    def __init__(self, save: Callable[[Container], None],
                 restart: Callable[[str], Coroutine[Any, Any, None]], tasks: TaskGroup) -> None:
        self._save = save
        self._restart = restart
        self._tasks = tasks
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._backoff: dict[str, float] = {}

    def schedule(self, c: Container) -> None:
        """Docker's back-off: 100 ms, doubling up to a minute; back to 100 ms after a run of 10 s or more."""
        ran = c.state.FinishedTs - c.state.StartedTs
        delay = 0.1 if ran >= 10 else min(self._backoff.get(c.id, 0.05) * 2, MAX_DELAY)
        self._backoff[c.id] = delay
        c.state.Status = "restarting"
        self._save(c)
        loop = asyncio.get_running_loop()
        self._timers[c.id] = loop.call_later(delay, lambda: self._fire(c.id))

    def _fire(self, cid: str) -> None:
        self._timers.pop(cid, None)
        self._tasks.spawn(self._restart(cid))

    def pending(self, cid: str) -> bool:
        return cid in self._timers

    def cancel(self, c: Container) -> bool:
        """Call off a pending restart; True if the container was restarting (now exited)."""
        timer = self._timers.pop(c.id, None)
        if timer is not None:
            timer.cancel()
        if c.state.Status == "restarting":
            c.state.Status = "exited"
            self._save(c)
            return True
        return False

    def forget(self, cid: str) -> None:
        self._backoff.pop(cid, None)

    def close(self) -> None:
        """Daemon shutdown: timers stop; "restarting" stays recorded and resumes at the next start."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
