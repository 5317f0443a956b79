"""Output as the docker CLI prints it: aligned tables (tabwriter, padding 3, minimum width 10),
human sizes (decimal units, 3 significant digits) and ages, and ``--format`` templates."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable

from berth.gotime import human_duration

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only on the hot path
if TYPE_CHECKING:
    from typing import Any

PADDING = 3


class FormatError(Exception):
    """A bad ``--format`` template (exit 1, as docker)."""


MIN_WIDTH = 10


def human_size(n: float, precision: int = 3) -> str:
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000.0
        i += 1
    return f"{n:.{precision}g}{units[i]}"


def ago(unix: float) -> str:
    return human_duration(time.time() - unix) + " ago"


def go_time(unix: float) -> str:
    """Go's time.Time.String() in UTC, as docker prints CreatedAt."""
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(unix))


def parse_iso(ts: str) -> float:
    """RFC 3339 with nanoseconds (the API's timestamps) to unix seconds; 0 for the zero time."""
    if not ts or ts.startswith("0001-"):
        return 0.0
    import calendar

    base, _, frac = ts.partition(".")
    tz = ""
    if frac:
        for i, ch in enumerate(frac):
            if not ch.isdigit():
                frac, tz = frac[:i], frac[i:]
                break
    else:
        for sep in ("Z", "+", "-"):
            j = base.find(sep, 10)
            if j > 0:
                base, tz = base[:j], base[j:]
                break
    secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    if tz and tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        hh, _, mm = tz[1:].partition(":")
        secs -= sign * (int(hh) * 3600 + int(mm or 0) * 60)
    return secs + (float("0." + frac) if frac else 0.0)


def align(lines: Iterable[str], out: Any = None) -> None:
    """tabwriter: cells split by tabs; every column but the last padded to its widest cell + 3."""
    rows = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for r in rows:
        for i, cell in enumerate(r[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell) + PADDING, MIN_WIDTH)
    w = out or sys.stdout
    w.write("".join("".join(c.ljust(widths[i]) for i, c in enumerate(r[:-1])) + r[-1] + "\n" for r in rows))


def write_rows(rows: list[dict[str, Any]], fmt: str | None, default: str, headers: dict[str, Any],
               quiet_field: str | None = None, quiet: bool = False) -> None:
    """Print ``rows`` (format contexts: field -> string, maybe callables) as ``--format`` asks:
    a ``table ...`` template gets a header line and alignment, ``json`` one JSON object a line,
    any other template one rendered line per row; ``-q`` only ``quiet_field``."""
    from berth.cli import gotemplate as gt

    out = sys.stdout
    if quiet and quiet_field and not fmt:
        out.write("".join(str(r[quiet_field]) + "\n" for r in rows))
        return
    src = fmt or default
    if src == "table":
        src = default
    if src == "json":
        src = "{{json .}}"
    src = gt.unescape(src)
    table = src.startswith("table")
    if table:
        src = src[5:].lstrip(" ")
        if quiet and quiet_field:
            src = "{{." + quiet_field + "}}"
            table = False
    try:
        tpl = gt.Template(src)
        lines = [tpl.execute(r) for r in rows]
        if table:
            head = tpl.execute(headers)
            align([head] + lines, out)
        else:
            out.write("".join(line + "\n" for line in lines))
    except gt.TemplateError as e:
        raise FormatError(f"template parsing error: {e}") from e


def render_one(fmt: str, obj: Any) -> str:
    """``inspect --format`` style: one template over one object; Docker adds a newline."""
    from berth.cli import gotemplate as gt

    try:
        return gt.render(gt.unescape(fmt), obj)
    except gt.TemplateError as e:
        raise FormatError(f"template parsing error: {e}") from e


def headers_for(names: dict[str, str]) -> dict[str, Any]:
    h: dict[str, Any] = dict(names)
    h["Label"] = lambda *a: "LABEL"
    return h


def label_func(labels: dict[str, str] | None) -> Callable[..., str]:
    return lambda name: (labels or {}).get(name, "")


def print_json(obj: Any) -> None:
    import json

    sys.stdout.write(json.dumps(obj, indent=4, ensure_ascii=False) + "\n")
