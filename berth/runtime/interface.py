"""The runtime interface: what the container engine needs from whatever runs its containers.

A ``Runtime`` runs OCI bundles under a monitor process that outlives berthd: the monitor
holds the container's stdio, writes its output to a log file (CRI log format, as
``berth.containers.logs`` reads it), serves attach and records the exit. Everything here is
in terms of bundles, pids and streams; how a monitor keeps its own state (pid files, exit
files, control sockets) is the implementation's business and never shows up here.

Today's implementation is ``berth.runtime.conmon.ConmonRuntime``; ``berth.runtime.IMPLEMENTATIONS``
lists them, and the runtime conformance tests run against each.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

STDOUT, STDERR = 1, 2  # the stream numbers of Docker's multiplexed framing


class RuntimeFailure(Exception):
    """The runtime refused or failed an operation; the message is the runtime's own, cleaned up."""


@dataclass(frozen=True)
class Bundle:
    """One container as the runtime sees it. ``dir`` is the container's run directory, which the
    engine creates and removes; it holds ``config.json`` and whatever the runtime keeps."""

    id: str
    dir: str
    name: str = ""
    log: str = ""  # where the monitor writes the container's output ("": keep none, log driver ``none``)
    oci: str = ""  # the OCI runtime chosen for this container (crun, runc); "": the engine's default


@dataclass(frozen=True)
class Created:
    pid: int  # the container's init process, created but not yet started
    monitor_pid: int  # the process whose end means the container has ended


@dataclass(frozen=True)
class Exit:
    code: int | None  # None: the monitor left no exit status (it was killed)
    at: float | None  # when the container exited, if the runtime knows
    oom_killed: bool


@dataclass(frozen=True)
class Live:
    """A container whose monitor still runs, found at start-up (restore)."""

    pid: int  # its init process, 0 if the runtime never reported one
    monitor_pid: int
    started: float  # when its init was created, 0 if unknown


class Attachment(Protocol):
    """A connection to a container's stdio. Output arrives as ``(stream, bytes)``, stream being
    ``STDOUT`` or ``STDERR``; the iterator ends when the container's stdio closes."""

    def output(self) -> AsyncIterator[tuple[int, bytes]]: ...

    async def write_stdin(self, data: bytes) -> None: ...

    def close_stdin(self) -> None: ...

    def close(self) -> None: ...


class ExecProcess(Protocol):
    """An extra process in a running container. Output is back-pressured: when nobody reads
    ``output()`` the process blocks on its pipes, unless ``discard_output`` was called."""

    pid: int  # its host pid: 0 until the runtime has reported it
    start_error: str  # once ended: the runtime's message if the process could not be started, else ""

    def output(self) -> AsyncIterator[tuple[int, bytes]]: ...

    def discard_output(self) -> None: ...

    async def write_stdin(self, data: bytes) -> None: ...

    def close_stdin(self) -> None: ...

    def resize(self, height: int, width: int) -> None: ...

    def kill(self, sig: int) -> None: ...

    async def wait(self) -> int:
        """The exit code (128+n for a signal), once the process ended and its output was read."""
        ...


class Runtime(Protocol):
    name: str  # the default OCI runtime's name (crun, runc), for /info
    runtimes: dict[str, str]  # every OCI runtime a container may choose: name -> binary path
    # True when ``create`` does not read ``config.json`` (only ``start`` does): the engine may then
    # run ``create`` while it still writes the spec
    spec_at_start: bool

    # -- lifecycle -------------------------------------------------------------------------
    async def create(self, b: Bundle, *, terminal: bool, stdin: bool, log_size_max: int = -1,
                     log_max_file: int = 1) -> Created:
        """Create the container from ``b.dir/config.json`` under a new monitor; not started yet.
        The log is cut at ``log_size_max`` bytes, keeping ``log_max_file`` files (LOG, LOG.1, ...)
        where the implementation rotates; ``Created.pid`` is 0 if the pid is known only at start."""
        ...

    async def start(self, b: Bundle) -> int | None:
        """Start the created container; return its pid when ``create`` could not tell it."""
        ...

    def kill(self, pid: int, sig: int) -> None:
        """Signal the container's init; ProcessLookupError if it is gone."""
        ...

    async def pause(self, b: Bundle) -> None: ...

    async def resume(self, b: Bundle) -> None: ...

    async def delete(self, b: Bundle) -> None:
        """Forget the container's runtime state (killing what is left of it); never fails."""
        ...

    async def update(self, b: Bundle, resources: dict[str, Any]) -> None:
        """Apply ``resources`` (an OCI ``linux.resources`` object) to the running container's cgroup."""
        ...

    # -- stdio -------------------------------------------------------------------------------
    def attach(self, b: Bundle) -> Attachment:
        """Connect to the container's stdio (from create on, so no output is missed); OSError if
        the container is gone."""
        ...

    def resize(self, b: Bundle, height: int, width: int) -> None: ...

    async def exec(self, b: Bundle, exec_id: str, process: dict[str, Any], *, stdin: bool,
                   attach: bool) -> ExecProcess:
        """Run ``process`` (an OCI process object) in the running container. Returns once it is
        under way (output is kept from the start); ``pid`` is filled in as soon as it is known.
        Without ``attach`` its output is dropped."""
        ...

    # -- exit ---------------------------------------------------------------------------------
    def watch(self, b: Bundle, monitor_pid: int, on_exit: Callable[[], None]) -> bool:
        """Call ``on_exit`` once, when the container has exited. False if it already has."""
        ...

    def exit_status(self, b: Bundle) -> Exit: ...

    def clear_exit(self, b: Bundle) -> None:
        """Forget the recorded exit (the container is removed or starts again)."""
        ...

    # -- restore ------------------------------------------------------------------------------
    async def states(self) -> dict[str, str]:
        """Every container the runtime holds: id -> created / running / paused / stopped."""
        ...

    def live(self, b: Bundle, recorded_monitor: int = 0) -> Live | None:
        """The container if its monitor still runs (``recorded_monitor``: the pid saved at start), or None."""
        ...

    async def reap(self, b: Bundle, recorded_monitor: int = 0) -> None:
        """Kill whatever a crash left of a container: its processes, monitor and runtime state."""
        ...
