"""The functions ``--format`` templates can call: Go's builtins and Docker's additions, and Go's
rules for printing values and for truth."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only on the hot path
if TYPE_CHECKING:
    from typing import Any

NO_VALUE = "<no value>"


class TemplateError(Exception):
    pass


def truthy(v: Any) -> bool:
    if v is None or v is False:
        return False
    if isinstance(v, (int, float, str, list, dict, tuple)) and not isinstance(v, bool):
        return bool(v)
    return True


def to_text(v: Any) -> str:
    """Go's %v of a JSON-like value."""
    if v is None:
        return NO_VALUE
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e21 else repr(v)
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{to_text(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(to_text(x) for x in v) + "]"
    return str(v)


def _go_json(v: Any) -> str:
    if isinstance(v, dict) and any(callable(x) for x in v.values()):
        # a list command's format context: its string fields, sorted as Go marshals a map
        v = {k: v[k] for k in sorted(v) if not callable(v[k])}
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def _printf(fmt: str, *args: Any) -> str:
    out: list[str] = []
    it = iter(args)
    i = 0
    spec = re.compile(r"%([-+ #0]*)(\d*)(?:\.(\d+))?([vsdqfxXtg%])")
    while i < len(fmt):
        m = spec.match(fmt, i) if fmt[i] == "%" else None
        if m is None:
            out.append(fmt[i])
            i += 1
            continue
        flags, width, prec, verb = m.groups()
        i = m.end()
        if verb == "%":
            out.append("%")
            continue
        a = next(it, None)
        if verb in "vst":
            s = to_text(a)
            if prec:
                s = s[:int(prec)]
        elif verb == "q":
            s = json.dumps(to_text(a) if not isinstance(a, str) else a)
        elif verb == "d":
            s = str(int(a)) if isinstance(a, (int, float)) else f"%!d({to_text(a)})"
        elif verb in "fg":
            s = f"{float(a):.{prec or 6}f}" if isinstance(a, (int, float)) else f"%!f({to_text(a)})"
        else:
            s = format(int(a), verb) if isinstance(a, int) else to_text(a).encode().hex()
        if width:
            s = s.ljust(int(width)) if "-" in flags else s.rjust(int(width))
        out.append(s)
    return "".join(out)


def _index(v: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(v, dict):
            v = v.get(k)
        elif isinstance(v, (list, tuple, str)):
            if not isinstance(k, int) or not -1 < k < len(v):
                raise TemplateError(f"error calling index: index out of range: {k}")
            v = v[k]
        elif v is None:
            return None
        else:
            raise TemplateError(f"can't index item of type {type(v).__name__}")
    return v


def _cmp(op: str) -> Callable[..., bool]:
    def f(a: Any, *bs: Any) -> bool:
        if op == "eq":
            return any(a == b for b in bs)
        b = bs[0]
        try:
            return bool({"ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op])
        except TypeError as e:
            raise TemplateError(f"error calling {op}: incompatible types for comparison") from e
    return f


def _and(*a: Any) -> Any:
    for x in a:
        if not truthy(x):
            return x
    return a[-1]


def _or(*a: Any) -> Any:
    for x in a:
        if truthy(x):
            return x
    return a[-1]


def _truncate(s: Any, n: int) -> str:
    return to_text(s)[:n]


FUNCS: dict[str, Callable[..., Any]] = {
    "json": _go_json,
    "join": lambda items, sep: sep.join(to_text(x) for x in (items or [])),
    "split": lambda s, sep: to_text(s).split(sep),
    "lower": lambda s: to_text(s).lower(),
    "upper": lambda s: to_text(s).upper(),
    "title": lambda s: to_text(s).title(),
    "pad": lambda s, left, right: " " * int(left) + to_text(s) + " " * int(right),
    "truncate": _truncate,
    "len": lambda v: len(v) if v is not None else 0,
    "index": _index,
    "slice": lambda v, *ix: v[slice(*ix)] if ix else v,
    "printf": _printf,
    "print": lambda *a: " ".join(to_text(x) for x in a) if not all(isinstance(x, str) for x in a)
    else "".join(a),
    "println": lambda *a: " ".join(to_text(x) for x in a) + "\n",
    "not": lambda v: not truthy(v),
    "and": _and,
    "or": _or,
    "eq": _cmp("eq"), "ne": _cmp("ne"), "lt": _cmp("lt"), "le": _cmp("le"), "gt": _cmp("gt"), "ge": _cmp("ge"),
}
