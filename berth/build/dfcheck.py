"""Per-instruction checks with moby's wording (its instructions package): argument counts,
flags each instruction accepts, stage names, HEALTHCHECK durations."""

from __future__ import annotations

import re

from berth.build.dflex import goq, heredoc_marker, strip_go

# Flags each instruction accepts (type: "bool", "string", or "strings" = may repeat). None means
# Docker never parses the flags of that instruction, so any are accepted and ignored.
FLAGS: dict[str, dict[str, str] | None] = {
    "add": {"chown": "string", "chmod": "string", "link": "bool", "keep-git-dir": "bool",
            "checksum": "string", "exclude": "strings", "unpack": "bool"},
    "copy": {"chown": "string", "from": "string", "chmod": "string", "link": "bool",
             "parents": "bool", "exclude": "strings"},
    "from": {"platform": "string"},
    "run": {"mount": "strings", "network": "string", "security": "string", "device": "strings"},
    "healthcheck": {"interval": "string", "timeout": "string", "start-period": "string",
                    "start-interval": "string", "retries": "string"},
    "stopsignal": None,
    "arg": None,
}

STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")


class InstructionError(Exception):
    """An instruction's arguments are wrong (moby's instructions package)."""



def parse_flags(cmd: str, raw: list[str]) -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
    allowed = FLAGS.get(cmd, {})
    if allowed is None:
        return {}, ()
    flags: dict[str, str] = {}
    ordered: list[tuple[str, str]] = []
    for arg in raw:
        if not arg.startswith("--"):
            raise InstructionError(f"arg should start with -- : {arg}")
        if arg == "--":
            break
        body = arg[2:]
        name, eq, value = body.partition("=")
        kind = allowed.get(name)
        if kind is None:
            raise InstructionError(f"unknown flag: {name}")
        if name in flags and kind != "strings":
            raise InstructionError(f"duplicate flag specified: {name}")
        if kind == "bool":
            if eq and value == "":
                raise InstructionError(f"missing a value on flag: {name}")
            low = value.lower()
            if low in ("true", ""):
                value = "true"
            elif low == "false":
                value = "false"
            else:
                raise InstructionError(f"expecting boolean value for flag {name}, not: {value}")
        elif not eq:
            raise InstructionError(f"missing a value on flag: {name}")
        flags[name] = value
        ordered.append((name, value))
    return flags, tuple(ordered)


def validate(cmd: str, args: list[str], json_form: bool, raw_flags: list[str],
              heredocs: tuple[object, ...]) -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
    """Docker's per-instruction argument checks, in Docker's order, with Docker's wording."""
    up = cmd.upper()
    if cmd in ("copy", "add") and len(args) < 2:
        raise InstructionError(
            f"{up} requires at least two arguments, but only one was provided. Destination could not be determined")
    if cmd == "from":
        if len(args) == 3 and args[1].lower() == "as":
            if not STAGE_NAME.match(args[2].lower()):
                raise InstructionError(
                    f"invalid name for build stage: {goq(args[2])}, name can't start with a number or contain symbols")
        elif len(args) != 1:
            raise InstructionError("FROM requires either one or three arguments")
    if cmd in ("maintainer", "workdir", "user", "stopsignal") and len(args) != 1:
        raise InstructionError(f"{up} requires exactly one argument")
    if cmd in ("onbuild", "healthcheck", "expose", "volume", "arg", "env", "label") and not args:
        raise InstructionError(f"{up} requires at least one argument")
    if cmd == "healthcheck" and args[0].upper() == "NONE":
        if len(args) != 1:
            raise InstructionError("HEALTHCHECK NONE takes no arguments")
        return {}, ()  # Docker does not parse HEALTHCHECK NONE's flags
    flags, ordered = parse_flags(cmd, raw_flags)
    if cmd in ("env", "label"):
        for i in range(0, len(args), 2):
            if args[i] == "":
                raise InstructionError(f"{up} names can not be blank")
    elif cmd == "arg":
        for word in args:
            if "=" in word and word.partition("=")[0] == "":
                raise InstructionError("ARG names can not be blank")
    elif cmd == "onbuild":
        trig = strip_go(args[0]).split(None, 1)[0].upper() if strip_go(args[0]) else ""
        if trig == "ONBUILD":
            raise InstructionError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if trig in ("MAINTAINER", "FROM"):
            raise InstructionError(f"{trig} isn't allowed as an ONBUILD trigger")
    elif cmd == "volume":
        if any(v.strip() == "" for v in args):
            raise InstructionError("VOLUME specified can not be an empty string")
    elif cmd == "shell":
        if not args:
            raise InstructionError("SHELL requires at least one argument")
        if not json_form:
            raise InstructionError(
                "SHELL requires the arguments to be in JSON form")
    elif cmd == "healthcheck":
        typ = args[0].upper()
        if typ != "CMD":
            raise InstructionError(f"Unknown type {goq(typ)} in HEALTHCHECK (try CMD)")
        if len(args) == 1:
            raise InstructionError("Missing command after HEALTHCHECK CMD")
        for name in ("interval", "timeout", "start-period", "start-interval"):
            flag_duration(flags, name)
        if flags.get("retries"):
            try:
                retries = int(flags["retries"], 10)
            except ValueError:
                raise InstructionError(
                    f'strconv.ParseInt: parsing {goq(flags["retries"])}: invalid syntax') from None
            if retries < 0:
                raise InstructionError(f"--retries cannot be negative ({retries})")
    elif cmd in ("copy", "add"):
        if heredoc_marker(args[-1]) is not None and not json_form:
            raise InstructionError(f"{up} cannot accept a heredoc as a destination")
    return flags, ordered


# ---------------------------------------------------------------------------------------------
# HEALTHCHECK durations (Go's time.ParseDuration)

DUR_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
              "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
DUR_NUM = re.compile(r"\d+(?:\.\d*)?|\.\d+")
DUR_UNIT = re.compile(r"[^\d.]+")
MIN_HEALTH_DURATION_NS = 1_000_000  # container.MinimumDuration = 1ms


def parse_go_duration(s: str) -> int:
    """Go's time.ParseDuration in nanoseconds; ValueError with Go's wording."""
    orig = s
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"time: invalid duration {goq(orig)}")
    total = 0
    pos = 0
    while pos < len(s):
        num = DUR_NUM.match(s, pos)
        if not num:
            raise ValueError(f"time: invalid duration {goq(orig)}")
        unit_m = DUR_UNIT.match(s, num.end())
        unit = unit_m.group(0) if unit_m else ""
        if unit == "":
            raise ValueError(f"time: missing unit in duration {goq(orig)}")
        if unit not in DUR_UNITS:
            raise ValueError(f"time: unknown unit {goq(unit)} in duration {goq(orig)}")
        whole, _, frac = num.group(0).partition(".")
        scale = DUR_UNITS[unit]
        total += int(whole or "0") * scale
        if frac:
            total += int(frac) * scale // (10 ** len(frac))
        pos = num.end() + len(unit)
    if total > 2**63 - 1:
        raise ValueError(f"time: invalid duration {goq(orig)}")
    return sign * total


def flag_duration(flags: dict[str, str], name: str) -> int:
    value = flags.get(name, "")
    if value == "":
        return 0
    try:
        ns = parse_go_duration(value)
    except ValueError as e:
        raise InstructionError(str(e)) from None
    if ns == 0:
        return 0
    if ns < MIN_HEALTH_DURATION_NS:
        raise InstructionError(f'Interval "{name}" cannot be less than 1ms')
    return ns


