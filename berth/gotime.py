"""Go's ways with time: durations as docker prints them ("Up 5 minutes") and as Docker's filters
take them, with the timestamps of ``until``/``since``.

``until=10m`` means "ten minutes before now"; ``until=2024-01-02T03:04:05Z`` is a date;
``until=1700000000.5`` is Unix seconds. The rules (which layouts, local time when no zone is
given, the error texts) follow the engine's timestamp parser.

The CLI imports this module on its start path (``docker ps`` ages), so it imports nothing at load:
re, json and datetime cost ~5 ms together and only the filter parsers, in the daemon, need them.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from datetime import timezone


def human_duration(seconds: float) -> str:
    """Go-units' HumanDuration: 'Less than a second', '3 minutes', 'About an hour', '2 weeks'."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)  # Go rounds half up here (Python's round() would go to even)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"  # years from the unrounded hours, as Go


_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DUR_PART = r"(\d*)(?:\.(\d*))?([^\d.]+)"  # patterns compiled at use: re's own cache keeps them


def _go_quote(s: str) -> str:
    import json

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
    import re

    part = re.compile(_DUR_PART)
    total, pos = 0.0, 0
    while pos < len(s):
        m = part.match(s, pos)
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
    from datetime import datetime, timedelta, timezone

    off = datetime.now().astimezone().utcoffset() or timedelta(0)
    return timezone(off)


def _parse_date(value: str) -> float | None:
    """The date layouts, chosen the way the engine chooses them; None if the shape does not fit."""
    import re
    from datetime import UTC, datetime, timedelta, timezone

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


_UNIX = r"\+?(\d+)(?:\.\+?(\d+))?"


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
    import re

    m = re.fullmatch(_UNIX, value)
    if m is None:
        raise ValueError(f"failed to parse value as time or duration: {_go_quote(value)}")
    sec, frac = int(m.group(1)), m.group(2) or ""
    return sec + (int(frac) * 10.0 ** (9 - len(frac))) / 1e9 if frac else float(sec)
