"""Times as Docker's filters take them: Go durations and the timestamps of ``until``/``since``.

``until=10m`` means "ten minutes before now"; ``until=2024-01-02T03:04:05Z`` is a date;
``until=1700000000.5`` is Unix seconds. The rules (which layouts, local time when no zone is
given, the error texts) follow the engine's timestamp parser.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DUR_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]+)")


def _go_quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def parse_duration(s: str) -> float:
    """A Go ``time.ParseDuration`` string ("1h30m", "-1.5h", "300ms") in seconds; ValueError if it is not one."""
    orig, neg = s, False
    if s[:1] in ("-", "+"):
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f"time: invalid duration {_go_quote(orig)}")
    total, pos = 0.0, 0
    while pos < len(s):
        m = _DUR_PART.match(s, pos)
        if m is None or (not m.group(1) and not m.group(2)):
            raise ValueError(f"time: invalid duration {_go_quote(orig)}")
        unit = _UNITS.get(m.group(3))
        if unit is None:
            raise ValueError(f"time: unknown unit {_go_quote(m.group(3))} in duration {_go_quote(orig)}")
        total += float(f"{m.group(1) or '0'}.{m.group(2) or '0'}") * unit
        pos = m.end()
    return -total if neg else total


_DATE = r"(\d{4})-(\d{2})-(\d{2})"
_ZONE = r"(Z|[+-]\d{2}:\d{2})"
# (has "T", colons in the time part) -> (layout named in errors, time-part pattern)
_TIME_SHAPES = {0: ("T15", r"T(\d{2})"), 1: ("T15:04", r"T(\d{2}):(\d{2})"),
                2: ("T15:04:05", r"T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?")}


def _local_zone() -> timezone:
    off = datetime.now().astimezone().utcoffset() or timedelta(0)
    return timezone(off)


def _parse_date(value: str) -> float | None:
    """The date layouts, chosen the way the engine chooses them; None if the shape does not fit."""
    local = not (any(c in value for c in "zZ+") or value.count("-") == 3)
    if "." in value or "T" in value:
        colons = value.count(":")
        if not local and not any(c in value for c in "zZ") and colons > 0:
            colons -= 1  # the zone offset's own colon
        layout, time_re = _TIME_SHAPES[2 if "." in value else min(colons, 2)]
    else:
        layout, time_re = "", ""
    m = re.fullmatch(_DATE + time_re + ("" if local else _ZONE), value)
    if m is None:
        if "-" in value:
            full = "2006-01-02" + layout + ("" if local else "Z07:00")
            raise ValueError(f"parsing time {_go_quote(value)} as {_go_quote(full)}: cannot parse "
                             f"{_go_quote(value)} as {_go_quote(full)}")
        return None
    g = list(m.groups())
    zone = g.pop() if not local else None
    nums = [int(x) if x and i < 6 else 0 for i, x in enumerate(g[:6])] + [0] * (6 - len(g[:6]))
    frac = g[6] if len(g) > 6 and g[6] else ""
    if zone is None:
        tz = _local_zone()
    elif zone == "Z":
        tz = UTC
    else:
        sign = -1 if zone[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        dt = datetime(nums[0], nums[1], nums[2], nums[3], nums[4], nums[5], tzinfo=tz)
    except ValueError as e:
        raise ValueError(f"parsing time {_go_quote(value)}: {e}") from e
    return dt.timestamp() + (float("0." + frac) if frac else 0.0)


_UNIX = re.compile(r"\+?(\d+)(?:\.\+?(\d+))?")


def parse_timestamp(value: str, now: float) -> float:
    """A filter time (Go duration before ``now``, a date, or Unix seconds) as Unix seconds."""
    if value != "0":
        try:
            d = parse_duration(value)
        except ValueError:
            pass
        else:
            return float(int(now - d))  # the engine keeps whole seconds here
    t = _parse_date(value)
    if t is not None:
        return t
    m = _UNIX.fullmatch(value)
    if m is None:
        raise ValueError(f"failed to parse value as time or duration: {_go_quote(value)}")
    sec, frac = int(m.group(1)), m.group(2) or ""
    return sec + (int(frac) * 10.0 ** (9 - len(frac))) / 1e9 if frac else float(sec)
