"""Shell patterns in Dockerfile variable modifiers: ${VAR#pat}, ${VAR%pat} and ${VAR/pat/repl}, doubled forms too.

A pattern (* ? [..] and the escape character) becomes a Python regex, matched at each position of the
value; that backtracks, where Go's regexps behave linearly, so a costly pattern/value pair is refused
before it can hold the daemon's loop (PatternTooCostly; berth/build/shellwords.py reports it as a
substitution error). Apart from the word lexer because it is matching, not lexing: it has its own cost
bound and its own regex translation, and the lexer only hands it a value and a pattern.
"""

from __future__ import annotations

import re

from berth.build.gostrings import go_quote


class PatternTooCostly(ValueError):
    """Matching this pattern against this value would take too long; str() is the reason."""


def glob_to_regex(pattern: str, escape: str) -> str:
    """A shell pattern (for ${VAR#pat} and friends) as a regex body: * ? [..] and escapes."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == escape and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("]", "!", "^") else i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def trim(value: str, pattern: str, escape: str, *, prefix: bool, greedy: bool) -> str:
    """${VAR#pat}, ${VAR##pat} (prefix) and ${VAR%pat}, ${VAR%%pat}: `value` without the shortest (or, greedy,
    longest) prefix/suffix that matches the whole pattern."""
    full = re.compile(glob_to_regex(pattern, escape), re.S)
    n = len(value)
    check_cost(value, pattern)
    if prefix:
        ends = range(n, -1, -1) if greedy else range(n + 1)
        for end in ends:
            if full.fullmatch(value, 0, end):
                return value[end:]
        return value
    starts = range(n + 1) if greedy else range(n, -1, -1)
    for start in starts:
        if full.fullmatch(value, start):
            return value[:start]
    return value


def replace(value: str, pattern: str, replacement: str, escape: str, *, replace_all: bool) -> str:
    """${VAR/pat/repl} (the first match) and ${VAR//pat/repl} (every match) on `value`."""
    regex = glob_to_regex(pattern, escape)
    if not regex:
        return value
    check_cost(value, pattern)
    return re.sub(regex, lambda _m: replacement, value, count=0 if replace_all else 1, flags=re.S)


MAX_PATTERN_COST = 50_000_000


def check_cost(value: str, pattern: str) -> None:
    """${VAR%pat}, ${VAR#pat} and ${VAR/pat/rep} match with a backtracking regex, tried at each
    position: about len(value) ** (1 + stars) steps, run in the daemon's event loop. Refuse what
    would take more than a fraction of a second (Go's linear regexps make Docker take these)."""
    n = len(value) + 1
    if n ** (1 + pattern.count("*")) > MAX_PATTERN_COST:
        raise PatternTooCostly(f"pattern {go_quote(pattern)} is too costly to match against a value of "
                               f"{n - 1} characters")
