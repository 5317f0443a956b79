"""Docker's ``filters`` query parameter, parsed and matched once for every resource.

A filter set maps a key to a set of values: values of one key are ORed, keys are ANDed (except
``label``, whose values must all hold). Each endpoint names the keys it accepts; any other key
is a 400 (``invalid filter 'x'``), never silently dropped - a prune must not delete more than
asked. ``name``/``id``-style filters are Go regular expressions: they run on RE2 (linear time),
so no pattern can stall the daemon; ``reference`` filters are ``path.Match`` globs.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable, Mapping

import re2

from berth import gotime
from berth.errors import InvalidParameter

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.max_mem = 8 << 20  # bounds a pathological pattern's program, as Go's regexp limits do


class Filters(dict[str, list[str]]):
    """A parsed ``filters`` value; still a plain ``{key: [values]}`` mapping."""

    @classmethod
    def of(cls, data: Mapping[str, Iterable[str]] | None) -> Filters:
        if isinstance(data, Filters):
            return data
        return cls({k: list(v) for k, v in (data or {}).items()})

    @classmethod
    def from_json(cls, raw: str | None) -> Filters:
        """Both shapes Docker accepts: ``{"k": {"v": true}}`` and the legacy ``{"k": ["v"]}``."""
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InvalidParameter("invalid filter") from e
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise InvalidParameter("invalid filter")
        out = cls()
        for k, v in data.items():
            if isinstance(v, dict) and all(isinstance(b, bool) for b in v.values()):
                out[k] = list(v)  # the engine keeps every listed value, whatever its flag
            elif isinstance(v, list) and all(isinstance(x, str) for x in v):
                out[k] = list(dict.fromkeys(v))
            elif v is None:
                out[k] = []
            else:
                raise InvalidParameter("invalid filter")
        return out

    # -- validation ------------------------------------------------------------------------------------
    def validate(self, accepted: Iterable[str], patterns: Iterable[str] = ()) -> Filters:
        """Refuse keys outside ``accepted``, and bad regular expressions under the ``patterns`` keys."""
        allowed = set(accepted)
        for key in self:
            if key not in allowed:
                raise InvalidParameter(f"invalid filter '{key}'")
        for key in patterns:
            for pattern in self.vals(key):
                regex(pattern, key)  # a bad pattern is the client's error, before anything runs
        return self

    def vals(self, key: str) -> list[str]:
        return self.get(key) or []

    def get_bool(self, key: str, default: bool) -> bool:
        """``true``/``1`` or ``false``/``0`` (exactly); anything else, or both, is a 400."""
        if key not in self:
            return default
        vals = set(self[key])
        is_true, is_false = bool(vals & {"true", "1"}), bool(vals & {"false", "0"})
        if is_true == is_false:
            raise InvalidParameter(f"invalid filter '{key}={go_list(self[key])}'" if vals
                                   else f"invalid filter '{key}'")
        return is_true

    # -- matching --------------------------------------------------------------------------------------
    def exact(self, key: str, source: str) -> bool:
        vals = self.vals(key)
        return not vals or source in vals

    def fuzzy(self, key: str, source: str) -> bool:
        """Exact or prefix."""
        vals = self.vals(key)
        return not vals or any(source.startswith(v) for v in vals)

    def match(self, key: str, source: str) -> bool:
        """Exact, or any value as an unanchored regular expression (Docker's ``Args.Match``)."""
        vals = self.vals(key)
        if not vals or source in vals:
            return True
        return any(regex(v, key).search(source) is not None for v in vals)

    def match_kv(self, key: str, labels: Mapping[str, str] | None) -> bool:
        """Every ``k`` / ``k=v`` value of ``key`` present in ``labels``."""
        vals = self.vals(key)
        if not vals:
            return True
        labels = labels or {}
        for want in vals:
            k, sep, v = want.partition("=")
            if k not in labels or (sep and labels[k] != v):
                return False
        return True

    def match_labels(self, labels: Mapping[str, str] | None) -> bool:
        """``label`` must all hold; ``label!`` excludes what carries all of its labels (prune semantics)."""
        if not self.match_kv("label", labels):
            return False
        return not (self.vals("label!") and self.match_kv("label!", labels))

    def until(self, now: float | None = None) -> float | None:
        """A prune's ``until`` as Unix seconds, or None when not given."""
        if "until" not in self:
            return None
        vals = self["until"]
        if len(vals) > 1:
            raise InvalidParameter("more than one until filter specified")
        if not vals:
            raise InvalidParameter("invalid filter 'until'")
        return timestamp(vals[0], now)


def timestamp(value: str, now: float | None = None) -> float:
    try:
        return gotime.parse_timestamp(value, time.time() if now is None else now)
    except ValueError as e:
        raise InvalidParameter(str(e)) from e


def go_list(vals: Iterable[str]) -> str:
    """A string slice as Go's ``%s`` prints it: ``[a b]``."""
    return "[" + " ".join(vals) + "]"


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re2._Regexp:
    return re2.compile(pattern, _RE2_OPTIONS)


def regex(pattern: str, key: str = "name") -> re2._Regexp:
    """A compiled RE2 pattern; an invalid one is a 400 naming the filter."""
    try:
        return _compile(pattern)
    except re2.error as e:
        msg = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise InvalidParameter(f"invalid filter '{key}={pattern}': error parsing regexp: {msg}") from e


# -- reference globs (Go's path.Match) ---------------------------------------------------------------
_BAD_PATTERN = "syntax error in pattern"


def _esc(ch: str) -> str:
    return f"\\x{{{ord(ch):x}}}"


def _glob_char(p: str, i: int) -> tuple[str, int]:
    """One character of a class, with its escape; fails where path.Match reports a bad pattern."""
    if i >= len(p) or p[i] in "-]":
        raise InvalidParameter(_BAD_PATTERN)
    if p[i] == "\\":
        i += 1
        if i >= len(p):
            raise InvalidParameter(_BAD_PATTERN)
    if i + 1 >= len(p):  # a class must be closed
        raise InvalidParameter(_BAD_PATTERN)
    return p[i], i + 1


@functools.lru_cache(maxsize=256)
def glob(pattern: str) -> re2._Regexp:
    """``path.Match`` as an anchored RE2 pattern: ``*`` and ``?`` never cross ``/``; ``[^...]`` negates."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "\\":
            if i + 1 >= n:
                raise InvalidParameter(_BAD_PATTERN)
            out.append(_esc(pattern[i + 1]))
            i += 2
        elif c == "[":
            i += 1
            negated = i < n and pattern[i] == "^"
            i += negated
            ranges: list[str] = []
            count = 0
            while True:
                if i < n and pattern[i] == "]" and count > 0:
                    i += 1
                    break
                lo, i = _glob_char(pattern, i)
                hi = lo
                if pattern[i] == "-":
                    hi, i = _glob_char(pattern, i + 1)
                if lo <= hi:
                    ranges.append(_esc(lo) + "-" + _esc(hi))
                count += 1
            if ranges:
                out.append("[" + ("^" if negated else "") + "".join(ranges) + "]")
            else:  # every range empty: matches nothing, or (negated) any one character
                out.append("(?s:.)" if negated else "[^\\x{0}-\\x{10ffff}]")
        else:
            out.append(_esc(c))
            i += 1
    return re2.compile("^(?s:" + "".join(out) + ")$", _RE2_OPTIONS)


def familiar_match(pattern: str, ref: str) -> bool:
    """Docker's ``reference.FamiliarMatch``: the familiar string, then the name without tag/digest."""
    g = glob(pattern)
    if g.search(ref) is not None:
        return True
    return g.search(familiar_name(ref)) is not None


def familiar_name(ref: str) -> str:
    name = ref.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    return name[:colon] if colon > slash else name
