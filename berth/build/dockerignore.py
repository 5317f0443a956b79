""".dockerignore rules as Docker applies them (the Dockerfile reference, ".dockerignore file").

Patterns are Go filepath.Match patterns plus `**` (any number of directories, zero included);
a `!` line makes an exception; the last matching line decides; a pattern that matches a
directory excludes everything below it. Paths are relative to the context root, "/"-separated.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

__all__ = ["read_patterns", "clean", "Matcher", "PatternError"]

_BOM = "\ufeff"
MAX_PATTERNS = 100_000


class PatternError(ValueError):
    """A pattern Go's filepath.Match rejects; str() is Go's "syntax error in pattern"."""


def clean(path: str) -> str:
    """Go's filepath.Clean on a "/"-separated path ("" -> ".")."""
    if path == "":
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def read_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore file: comments and blank lines dropped, each cleaned,
    a leading "/" removed (patterns are relative to the context), "!" kept in front."""
    out: list[str] = []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for n, raw in enumerate(lines):
        line = raw[:-1] if raw.endswith("\r") else raw
        if n == 0 and line.startswith(_BOM):
            line = line[len(_BOM):]
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if pattern == "":
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        out.append("!" + pattern if invert else pattern)
        if len(out) > MAX_PATTERNS:
            raise PatternError(f"too many patterns in .dockerignore (more than {MAX_PATTERNS})")
    return out


def _check_syntax(pattern: str) -> None:
    """Reject what Go's filepath.Match calls a bad pattern: an unclosed `[`, an empty class,
    or a trailing escape inside a class."""
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            i += 2
            if i > n:
                raise PatternError("syntax error in pattern")
            continue
        if ch == "[":
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            start = i
            while True:
                if i >= n:
                    raise PatternError("syntax error in pattern")
                c = pattern[i]
                if c == "]" and i > start:
                    break
                if c == "]" and i == start:
                    raise PatternError("syntax error in pattern")
                if c == "\\":
                    i += 1
                    if i >= n:
                        raise PatternError("syntax error in pattern")
                if c == "-" and i == start:
                    raise PatternError("syntax error in pattern")
                i += 1
        elif ch == "]":
            pass
        i += 1


def _compile(pattern: str) -> re.Pattern[str]:
    """The regex Docker's pattern matcher builds for a pattern (moby/patternmatcher semantics:
    `*` and `?` never cross "/", `**` crosses any number of directories)."""
    out = ["^"]
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i + 1 < n:
                out.append(re.escape(pattern[i + 1]))
                i += 1
            else:
                out.append(r"\\")
        elif ch == "[":
            j = i + 1
            body: list[str] = []
            if j < n and pattern[j] == "^":
                body.append("^")
                j += 1
            while j < n and (pattern[j] != "]" or j == i + 1):
                c = pattern[j]
                if c == "\\" and j + 1 < n:
                    body.append(re.escape(pattern[j + 1]))
                    j += 2
                    continue
                body.append(c if c == "-" else re.escape(c))
                j += 1
            out.append("[" + "".join(body) + "]")
            i = j
        else:
            out.append(re.escape(ch))
        i += 1
    out.append(r"\Z")
    return re.compile("".join(out), re.S)


@dataclass(frozen=True)
class _Pattern:
    text: str          # cleaned, without "!"
    exclusion: bool
    regex: re.Pattern[str]

    def match(self, path: str) -> bool:
        return self.regex.match(path) is not None


class Matcher:
    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in patterns:
            p = raw.strip()
            if p == "":
                continue
            p = clean(p)
            exclusion = p.startswith("!")
            if exclusion:
                if len(p) == 1:
                    raise PatternError('illegal exclusion pattern: "!"')
                p = p[1:]
            _check_syntax(p)
            self.patterns.append(_Pattern(p, exclusion, _compile(p)))
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    def excluded(self, relpath: str, is_dir: bool = False) -> bool:
        """Is this path (relative to the context, "/"-separated) excluded? A pattern that
        matches any parent directory matches the path too; the last matching pattern wins."""
        del is_dir  # Docker's rules do not depend on the file type
        path = clean(relpath)
        parent = posixpath.dirname(path)
        parents = parent.split("/") if parent and parent != "." else []
        matched = False
        for pat in self.patterns:
            # An inclusion cannot change an already-excluded result, nor an exclusion a kept one.
            if pat.exclusion != matched:
                continue
            hit = pat.match(path)
            if not hit:
                for k in range(1, len(parents) + 1):
                    if pat.match("/".join(parents[:k])):
                        hit = True
                        break
            if hit:
                matched = not pat.exclusion
        return matched

    def may_contain_included(self, reldir: str) -> bool:
        """Must a walk enter this excluded directory? Only when a "!" pattern starts with it
        (Docker's own shortcut: an exception like "!**/keep" does not keep a directory open)."""
        if not self.has_exclusions:
            return False
        prefix = clean(reldir) + "/"
        return any(p.exclusion and (p.text + "/").startswith(prefix) for p in self.patterns)
