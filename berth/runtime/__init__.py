"""Running containers: OCI specs, security options, and the ``Runtime`` interface
(berth.runtime.interface) with its implementations, chosen by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from berth.runtime.interface import Runtime

OCI_RUNTIMES = ("crun", "runc")  # what a container may ask for (HostConfig.Runtime) when installed


def _conmon(exec_root: str, oci_runtime: str, others: Sequence[str] = ()) -> Runtime:
    from berth.runtime.conmon import ConmonRuntime

    return ConmonRuntime(exec_root, oci_runtime, others)


def _berth(exec_root: str, oci_runtime: str, others: Sequence[str] = ()) -> Runtime:
    from berth.runtime.berthmon import BerthRuntime

    return BerthRuntime(exec_root, oci_runtime, others)


# name -> factory(exec root, default OCI runtime, other OCI runtimes a container may choose); the
# runtime conformance tests run against each
IMPLEMENTATIONS: dict[str, Callable[..., Runtime]] = {"conmon": _conmon, "berth": _berth}
DEFAULT = "auto"  # berth when berth-monitor builds and passes its self-check, else conmon


def make_runtime(exec_root: str, oci_runtime: str, kind: str = DEFAULT, others: Sequence[str] = ()) -> Runtime:
    if kind == "auto":
        from berth.runtime.berthmon import usable

        kind = "berth" if usable() else "conmon"
    return IMPLEMENTATIONS[kind](exec_root, oci_runtime, others)
