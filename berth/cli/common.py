"""What every command module uses: the client of this invocation, and flag value types."""

from __future__ import annotations

import re
from typing import Any

import click

from berth.cli.errors import CLIError


def api() -> Any:
    """The lean client for the daemon chosen by -H/--tls* and the environment."""
    from berth.cli.app import State

    st = click.get_current_context().find_object(State)
    assert st is not None
    return st.client


def each(names: tuple[str, ...], action: Any, echo: bool = True) -> None:
    """Docker's multi-target habit: do ``action`` for each name, print the name on success, an error
    line for each failure, and exit 1 at the end if any failed."""
    from berth.cli.client import APIError

    failed = False
    for n in names:
        try:
            action(n)
            if echo:
                click.echo(n)
        except APIError as e:
            click.echo(str(e), err=True)
            failed = True
    if failed:
        raise CLIError("", 1)


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtpb]?)(?:i?b)?$", re.I)


class SizeType(click.ParamType):  # type: ignore[type-arg]
    """Docker's RAMInBytes: 512, 512k, 64m, 1g (binary multiples)."""

    name = "bytes"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        m = _SIZE.match(str(value).strip())
        if not m:
            self.fail(f"invalid size: '{value}'", param, ctx)
        mult = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
        return int(float(m.group(1)) * mult[m.group(2).lower()])


class DurationType(click.ParamType):  # type: ignore[type-arg]
    """Go durations (``10s``, ``1m30s``, ``500ms``) to seconds; a bare number is seconds."""

    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        s = str(value).strip()
        try:
            return float(s)
        except ValueError:
            pass
        units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
        parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", s)
        if not parts or "".join(a + b for a, b in parts) != s:
            self.fail(f"time: invalid duration \"{value}\"", param, ctx)
        return sum(float(a) * units[b] for a, b in parts)


SIZE = SizeType()
DURATION = DurationType()


def split_kv(items: tuple[str, ...] | list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not k:
            raise click.BadParameter(f"invalid {what} '{it}'")
        out[k] = v if sep else ""
    return out


def filters(items: tuple[str, ...]) -> dict[str, list[str]] | None:
    """``-f key=value`` flags to the API's filters object; a missing '=' is Docker's error."""
    if not items:
        return None
    out: dict[str, list[str]] = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep:
            raise click.BadParameter(f"bad format of filter (expected name=value): {it}",
                                     param_hint="'-f' / '--filter'")
        out.setdefault(k.strip().lower(), []).append(v)
    return out


def short_id(i: str) -> str:
    return i.split(":", 1)[-1][:12]
