"""Healthchecks: run the container's probe on its schedule and keep Docker's ``State.Health``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from berth.errors import InvalidParameter

NS = 1_000_000_000
DEFAULTS = {"Interval": 30 * NS, "Timeout": 30 * NS, "StartPeriod": 0, "StartInterval": 5 * NS, "Retries": 3}
MAX_LOG = 5
MAX_OUTPUT = 4096

# (argv) -> (exit code, output); runs one probe inside the container
Probe = Callable[[list[str], float], Awaitable[tuple[int, str]]]


def effective(container_cfg: dict[str, Any], image_cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The container's healthcheck, its unset fields taken from the image's, then Docker's defaults."""
    hc = dict(image_cfg.get("Healthcheck") or {})
    for k, v in (container_cfg.get("Healthcheck") or {}).items():
        if v:
            hc[k] = v
    test = hc.get("Test") or []
    if not test or test[0] == "NONE":
        return None
    return {**DEFAULTS, **{k: v for k, v in hc.items() if v}}


def validate(hc: dict[str, Any] | None) -> None:
    if not hc:
        return
    test = hc.get("Test") or []
    if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        raise InvalidParameter(f"Config.Healthcheck.Test: unknown type {test[0]!r} (NONE, CMD, CMD-SHELL)")
    for k in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        v = hc.get(k) or 0
        if v and v < 1_000_000:
            raise InvalidParameter(f"Config.Healthcheck.{k}: {k} in Healthcheck cannot be less than 1ms")
    if (hc.get("Retries") or 0) < 0:
        raise InvalidParameter("Config.Healthcheck.Retries: Retries in Healthcheck cannot be negative")


def argv(test: list[str]) -> list[str]:
    return ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"


class Monitor:
    """One per running container with a healthcheck."""

    def __init__(self, cfg: dict[str, Any], probe: Probe, health: dict[str, Any],
                 on_change: Callable[[str], None], started: float) -> None:
        self.cfg = cfg
        self.probe = probe
        self.health = health  # State.Health, updated in place
        self.on_change = on_change
        self.started = started
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.health.clear()
        self.health.update({"Status": "starting", "FailingStreak": 0, "Log": []})
        self.task = asyncio.get_running_loop().create_task(self._loop())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _loop(self) -> None:
        while True:
            in_start = time.time() - self.started < self.cfg["StartPeriod"] / NS
            await asyncio.sleep((self.cfg["StartInterval"] if in_start and self.health["Status"] == "starting"
                                 else self.cfg["Interval"]) / NS)
            await self.run_once()

    async def run_once(self) -> None:
        start = _now()
        try:
            code, out = await self.probe(argv(self.cfg["Test"]), self.cfg["Timeout"] / NS)
        except TimeoutError:
            code, out = -1, f"Health check exceeded timeout ({self.cfg['Timeout'] / NS:g}s)"
        except Exception as e:  # the probe could not run at all: a failure, as Docker counts it
            code, out = -1, str(e)
        log = self.health.setdefault("Log", [])
        log.append({"Start": start, "End": _now(), "ExitCode": code, "Output": out[:MAX_OUTPUT]})
        del log[:-MAX_LOG]
        old = self.health["Status"]
        if code == 0:
            self.health["FailingStreak"] = 0
            self.health["Status"] = "healthy"
        else:
            in_start = time.time() - self.started < self.cfg["StartPeriod"] / NS
            if not in_start or old != "starting":
                self.health["FailingStreak"] = self.health.get("FailingStreak", 0) + 1
                if self.health["FailingStreak"] >= self.cfg["Retries"]:
                    self.health["Status"] = "unhealthy"
        if self.health["Status"] != old:
            self.on_change(self.health["Status"])


async def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
