"""Go's filepath.Match, which COPY/ADD source wildcards use (the Dockerfile reference, "COPY")."""

from __future__ import annotations

import re


def has_wildcards(path: str) -> bool:
    """Docker's containsWildcards: an unescaped * ? or [."""
    i = 0
    while i < len(path):
        ch = path[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "*?[":
            return True
        i += 1
    return False


_match_cache: dict[str, re.Pattern[str] | None] = {}


def _match_regex(pattern: str) -> re.Pattern[str] | None:
    """filepath.Match as a regex ("/" is never matched by * ? or a class); None if malformed."""
    if pattern in _match_cache:
        return _match_cache[pattern]
    out: list[str] = []
    i, n = 0, len(pattern)
    ok = True
    while i < n:
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i + 1 >= n:
                ok = False
                break
            out.append(re.escape(pattern[i + 1]))
            i += 1
        elif ch == "[":
            j = i + 1
            negate = j < n and pattern[j] == "^"
            if negate:
                j += 1
            body: list[str] = []
            closed = False
            while j < n:
                c = pattern[j]
                if c == "]" and body:
                    closed = True
                    break
                if c == "\\":
                    if j + 1 >= n:
                        break
                    c = pattern[j + 1]
                    j += 1
                lo = c
                if j + 2 < n and pattern[j + 1] == "-" and pattern[j + 2] != "]":
                    hi = pattern[j + 2]
                    if hi == "\\" and j + 3 < n:
                        hi = pattern[j + 3]
                        j += 1
                    body.append(re.escape(lo) + "-" + re.escape(hi))
                    j += 3
                    continue
                body.append(re.escape(lo))
                j += 1
            if not closed:
                ok = False
                break
            out.append("(?:(?!/)[" + ("^" if negate else "") + "".join(body) + "])")
            i = j
        else:
            out.append(re.escape(ch))
        i += 1
    rx = re.compile("".join(out) + r"\Z", re.S) if ok else None
    if len(_match_cache) < 4096:
        _match_cache[pattern] = rx
    return rx


def go_match(pattern: str, name: str) -> bool:
    rx = _match_regex(pattern)
    return rx is not None and rx.match(name) is not None
