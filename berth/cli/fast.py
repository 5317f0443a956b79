"""The hot read-only commands (``version``, ``ps``, ``images``) parsed without click.

Only argument lists made entirely of flags this parser knows are handled here; anything else
(an unknown flag, ``--help``, a malformed value) returns None and goes to the click tree, which
owns every error message and the help text. The output code is the click commands' own
(``rows.py``, ``version.py``), so the two paths cannot print differently.
"""

from __future__ import annotations

import os
import sys

GLOBAL_VALUE = {"-H": "host", "--host": "host", "--tlscacert": "tlscacert", "--tlscert": "tlscert",
                "--tlskey": "tlskey", "-l": "log_level", "--log-level": "log_level", "--config": "config"}
GLOBAL_FLAG = {"--tls": "tls", "--tlsverify": "tlsverify", "-D": "debug", "--debug": "debug"}

# per command: flags (short/long -> name), options taking a value, multi-valued options
SPECS: dict[str, tuple[dict[str, str], dict[str, str], set[str], int]] = {
    "version": ({}, {"-f": "format", "--format": "format"}, set(), 0),
    "ps": ({"-a": "all", "--all": "all", "-q": "quiet", "--quiet": "quiet", "-s": "size", "--size": "size",
            "-l": "latest", "--latest": "latest", "--no-trunc": "no_trunc"},
           {"-n": "last", "--last": "last", "-f": "filter", "--filter": "filter", "--format": "format"},
           {"filter"}, 0),
    "images": ({"-a": "all", "--all": "all", "-q": "quiet", "--quiet": "quiet", "--digests": "digests",
                "--no-trunc": "no_trunc"},
               {"-f": "filter", "--filter": "filter", "--format": "format"}, {"filter"}, 1),
}


class _Unknown(Exception):
    pass


def _parse(args: list[str], flags: dict[str, str], values: dict[str, str], multi: set[str],
           max_pos: int, stop_at_command: bool) -> tuple[dict[str, object], list[str]]:
    opts: dict[str, object] = {}
    pos: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a == "--" or not a.startswith("-") or a == "-":
            if stop_at_command:
                return opts, [a] + args[i:]
            pos.append(a)
            if len(pos) > max_pos:
                raise _Unknown
            continue
        name, eq, val = a.partition("=") if a.startswith("--") else (a, "", "")
        if name in flags and not eq:
            opts[flags[name]] = True
            continue
        if name in values:
            if not eq:
                if i >= len(args):
                    raise _Unknown
                val = args[i]
                i += 1
            key = values[name]
            if key in multi:
                opts.setdefault(key, [])
                opts[key].append(val)  # type: ignore[attr-defined]
            else:
                opts[key] = val
            continue
        if not a.startswith("--") and len(a) > 2 and all("-" + c in flags for c in a[1:]):
            for c in a[1:]:  # combined short flags: -aq
                opts[flags["-" + c]] = True
            continue
        if not a.startswith("--") and len(a) > 2 and a[:2] in values:  # -n3, -Hunix://...
            args = args[:i] + [a[:2], a[2:]] + args[i:]
            i += 1
            continue
        raise _Unknown
    return opts, pos


def _filters(items: list[str]) -> dict[str, list[str]] | None:
    if not items:
        return None
    out: dict[str, list[str]] = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep:
            raise _Unknown  # click words the error
        out.setdefault(k.strip().lower(), []).append(v)
    return out


def _opt(d: dict[str, object], k: str) -> str | None:
    v = d.get(k)
    return v if isinstance(v, str) else None


def try_fast(args: list[str]) -> int | None:
    if args in (["-v"], ["--version"]):
        import berth

        sys.stdout.write(f"Berth version {berth.__version__}, API {berth.API_VERSION}\n")
        return 0
    if args in ([], ["--help"]):
        from berth.cli.commands import top_help

        sys.stdout.write(top_help())
        return 0
    try:
        g, rest = _parse(args, GLOBAL_FLAG, GLOBAL_VALUE, set(), 0, True)
        if not rest or rest[0] not in SPECS:
            return None
        flags, values, multi, max_pos = SPECS[rest[0]]
        o, pos = _parse(rest[1:], flags, values, multi, max_pos, False)
        last = -1
        if "last" in o:
            last = int(str(o["last"]))
        flt = _filters(o.get("filter", []))  # type: ignore[arg-type]
    except (_Unknown, ValueError):
        return None
    from berth.cli.client import APIError, Client, ConnectError, StreamError, tls_from_env
    from berth.cli.fmt import FormatError

    if g.get("debug"):
        os.environ["BERTH_DEBUG"] = "1"
    host = str(g.get("host") or os.environ.get("BERTH_HOST") or os.environ.get("DOCKER_HOST")
               or "unix:///var/run/berth.sock")
    try:
        tls = tls_from_env(bool(g.get("tls")), bool(g.get("tlsverify")), _opt(g, "tlscacert"), _opt(g, "tlscert"),
                           _opt(g, "tlskey"))
        client = Client(host, tls)
    except ValueError:
        return None  # click reports the bad host
    fmt = o.get("format")
    try:
        if rest[0] == "version":
            from berth.cli.version import show_version

            return show_version(client, fmt)  # type: ignore[arg-type]
        from berth.cli import rows

        if rest[0] == "ps":
            rows.list_containers(client, bool(o.get("all")), flt, fmt, last, bool(o.get("latest")),  # type: ignore[arg-type]
                                 bool(o.get("no_trunc")), bool(o.get("quiet")), bool(o.get("size")))
        else:
            rows.list_images(client, bool(o.get("all")), flt, fmt, bool(o.get("digests")),  # type: ignore[arg-type]
                             bool(o.get("no_trunc")), bool(o.get("quiet")), pos[0] if pos else None)
        sys.stdout.flush()
        return 0
    except (ConnectError, APIError, StreamError, FormatError) as e:
        print(str(e), file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 141
    except OSError as e:  # a daemon that answered garbage or hung up mid-answer: one line, as run_cli says it
        if os.environ.get("BERTH_DEBUG"):
            raise
        print(f"berth: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""), file=sys.stderr)
        return 1
