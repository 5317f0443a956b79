"""Health supervision: one ``health.Monitor`` per running container with a healthcheck.

The lifecycle calls ``start`` when a container starts (or is found running at restore) and
``stop`` when it exits; probes run as exec sessions through ``probe``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from berth.containers import health
from berth.containers.store import Container

# (container, argv, timeout) -> (exit code, output)
ContainerProbe = Callable[[Container, list[str], float], Awaitable[tuple[int, str]]]


class HealthSupervisor:
    def __init__(self, image_config: Callable[[Container], dict[str, Any]], probe: ContainerProbe,
                 changed: Callable[[Container, str], None]) -> None:
        self._image_config = image_config
        self._probe = probe
        self._changed = changed
        self._monitors: dict[str, health.Monitor] = {}

    def start(self, c: Container) -> None:
        cfg = health.effective(c.config, self._image_config(c))
        if cfg is None:
            return
        self.stop(c.id)
        c.state.Health = {}
        mon = health.Monitor(cfg, lambda argv, timeout: self._probe(c, argv, timeout), c.state.Health,
                             lambda status: self._changed(c, status), c.state.StartedTs)
        self._monitors[c.id] = mon
        mon.start()

    def stop(self, cid: str) -> None:
        mon = self._monitors.pop(cid, None)
        if mon is not None:
            mon.stop()

    def close(self) -> None:
        for cid in list(self._monitors):
            self.stop(cid)
