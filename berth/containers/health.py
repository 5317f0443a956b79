"""Healthchecks: run the container's probe on its schedule and keep Docker's ``State.Health``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from berth.errors import InvalidParameter

NS = 1_000_000_000
DEFAULTS = {"Interval": 30 * NS, "Timeout": 30 * NS, "StartPeriod": 0, "StartInterval": 5 * NS, "Retries": 3}
MAX_LOG = 5
MAX_OUTPUT = 4096  # bytes of each probe's output kept, as Docker's maxOutputLen
SETTLE = 10.0  # seconds a timed-out probe is given to die before the next one may start

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


class ProbeOutput:
    """The first ``MAX_OUTPUT`` bytes of a probe's output; the rest is read and dropped, so a probe
    that prints without end (``yes``) costs a bounded buffer, and "..." marks the cut as in Docker."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.truncated = False

    def write(self, data: bytes) -> None:
        room = MAX_OUTPUT - len(self.buf)
        if room > 0:
            self.buf += data[:room]
        if len(data) > max(room, 0):
            self.truncated = True

    async def consume(self, chunks: AsyncIterator[tuple[int, bytes]]) -> None:
        """Read every chunk until the streams end (the probe's pipes must never fill up)."""
        async for _stream, data in chunks:
            self.write(data)

    def text(self) -> str:
        return self.buf.decode(errors="replace") + ("..." if self.truncated else "")


def go_duration(ns: int) -> str:
    """A duration as Go prints one: 500ms, 1.5s, 1m30s, 1h0m0s."""
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)

    def fmt(v: int, scale: int) -> str:
        whole, frac = divmod(v, scale)
        digits = str(frac).rjust(len(str(scale)) - 1, "0").rstrip("0")
        return f"{whole}.{digits}" if digits else str(whole)

    if u < 1000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{fmt(u, 1000)}\u00b5s"
    if u < NS:
        return f"{sign}{fmt(u, 1_000_000)}ms"
    h, rem = divmod(u, 3600 * NS)
    m, rem = divmod(rem, 60 * NS)
    return sign + (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + fmt(rem, NS) + "s"


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
            code, out = -1, f"Health check exceeded timeout ({go_duration(int(self.cfg['Timeout']))})"
        except Exception as e:  # the probe could not run at all: a failure, as Docker counts it
            code, out = -1, str(e)
        log = self.health.setdefault("Log", [])
        log.append({"Start": start, "End": _now(), "ExitCode": code, "Output": out})
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
