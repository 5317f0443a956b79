"""Line-level lexing of Dockerfile instructions, as moby's parser package does it.

Directives, continuation handling, the leading `--flag` words, JSON (exec) form, the word
splitting of ENV/LABEL/ARG and of heredoc markers. Used by berth.build.dockerfile.
"""

from __future__ import annotations

import json
import re

from berth.build.shellwords import SubstitutionError, go_quote, heredoc_word, is_go_space, raw_words

WS = re.compile(r"[\t\v\f\r ]+")
DIRECTIVE = re.compile(r"^#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*$")
VALID_DIRECTIVES = frozenset({"escape", "syntax", "check"})
HEREDOC = re.compile(r"^(\d*)<<(-?)([^<]*)$", re.S)


class ParserError(Exception):
    """The text cannot be parsed at all (moby's parser package): no "parse error on line" prefix."""



class Directives:
    def __init__(self) -> None:
        self.escape = "\\"
        self.done = False
        self.seen: set[str] = set()
        self._cont = self._continuation_regex()

    def _continuation_regex(self) -> re.Pattern[str]:
        return re.compile(re.escape(self.escape) + r"[ \t]*$")

    def possible(self, line: str) -> None:
        if self.done:
            return
        m = DIRECTIVE.match(line)
        if not m:
            self.done = True
            return
        key = m.group(1).lower()
        if key not in VALID_DIRECTIVES:
            self.done = True
            return
        if key in self.seen:
            raise ParserError(f"only one {key} parser directive can be used")
        self.seen.add(key)
        if key == "escape":
            value = m.group(2)
            if value not in ("`", "\\"):
                raise ParserError(f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value
            self._cont = self._continuation_regex()

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """(line without the trailing escape, is this the end of the instruction?)"""
        m = self._cont.search(line)
        if m:
            return line[: m.start()], False
        return line, True


def _skip_run(s: str, i: int, *, spaces: bool) -> int:
    """The index past the run of Go spaces (spaces=True) or of other characters that starts at i."""
    while i < len(s) and is_go_space(s[i]) == spaces:
        i += 1
    return i


def lstrip_go(s: str) -> str:
    return s[_skip_run(s, 0, spaces=True):]


def strip_go(s: str) -> str:
    s = lstrip_go(s)
    j = len(s)
    while j > 0 and is_go_space(s[j - 1]):
        j -= 1
    return s[:j]


def is_comment(line: str) -> bool:
    return lstrip_go(line).startswith("#")


def split_lines(text: str) -> list[str]:
    # bufio.ScanLines: split at \n, drop one trailing \r per line, no empty last line.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _scan_words(rest: str, escape: str, *, flags: bool) -> tuple[list[str], int]:
    """The word scanner of moby's parser, in its two uses: (words, where the unscanned rest starts).

    flags=False is parseWords: words as written, quotes and escapes kept in them, an escape literal
    inside single quotes. flags=True is extractBuilderFlags: quotes and escapes are consumed, and the
    scan stops before the first word that does not start with "--", or at a bare "--".
    """
    keep = not flags
    words: list[str] = []
    buf: list[str] = []
    phase = "spaces"
    quote = ""
    blank_ok = False
    pos = 0
    n = len(rest)
    while pos <= n:
        ch = rest[pos] if pos < n else ""
        if phase == "spaces":
            if pos == n:
                break
            if is_go_space(ch):
                pos += 1
                continue
            if flags and (ch != "-" or pos + 1 == n or rest[pos + 1] != "-"):
                return words, pos
            phase = "word"
        if pos == n:  # the end inside a word or a quote
            w = "".join(buf)
            if (blank_ok or w) and not (flags and w == "--"):
                words.append(w)
            break
        if phase == "word":
            if is_go_space(ch):
                phase = "spaces"
                w = "".join(buf)
                if flags and w == "--":
                    return words, pos
                if blank_ok or w:
                    words.append(w)
                buf = []
                blank_ok = False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
                phase = "quote"
                if not keep:
                    pos += 1
                    continue
            if ch == escape:
                if pos + 1 == n:
                    pos += 1
                    continue
                if keep:
                    buf.append(ch)
                pos += 1
                ch = rest[pos]
            buf.append(ch)
            pos += 1
            continue
        # in quote
        if ch == quote:
            phase = "word"
            if not keep:
                pos += 1
                continue
        if ch == escape and (flags or quote != "'"):
            if pos + 1 == n:
                phase = "word"
                pos += 1
                continue
            if keep:
                buf.append(ch)
            pos += 1
            ch = rest[pos]
        buf.append(ch)
        pos += 1
    return words, n


def extract_flags(rest: str) -> tuple[str, list[str]]:
    """Leading `--flag[=value]` words of an instruction, and the rest of the line."""
    words, end = _scan_words(rest, "\\", flags=True)
    return rest[end:], words


def parse_json(rest: str) -> list[str] | None:
    """A JSON array of strings, or None when `rest` is not a JSON array (then: shell form)."""
    rest = lstrip_go(rest)
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise ParserError("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def words_preserving_quotes(rest: str, escape: str) -> list[str]:
    """Docker's parseWords: whitespace-separated, quotes and escapes kept in the words."""
    return _scan_words(rest, escape, flags=False)[0]


def name_value(rest: str, key: str, escape: str) -> list[str]:
    words = words_preserving_quotes(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = WS.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise ParserError(f"{key} must have two arguments")
        return [parts[0], parts[1]]
    out: list[str] = []
    for w in words:
        if "=" not in w:
            raise ParserError(
                f"Syntax error - can't find = in {goq(w)}. Must be of the form: name=value")
        k, _, v = w.partition("=")
        out += [k, v]
    return out


def goq(s: str) -> str:
    return go_quote(s)


def args_for(cmd: str, rest: str, escape: str) -> tuple[list[str], bool]:
    """Split an instruction's argument text as Docker's per-instruction line parsers do."""
    if cmd in ("run", "cmd", "entrypoint", "shell"):
        if rest == "":
            return [], False
        js = parse_json(rest)
        return (js, True) if js is not None else ([rest], False)
    if cmd in ("copy", "add", "volume"):
        js = parse_json(rest)
        if js is not None:
            return js, True
        return _fields(rest), False
    if cmd in ("from", "expose"):
        return _fields(rest), False
    if cmd in ("env", "label"):
        return name_value(rest, cmd.upper(), escape), False
    if cmd == "arg":
        return words_preserving_quotes(rest, escape), False
    if cmd in ("maintainer", "stopsignal", "user", "workdir", "onbuild"):
        return ([] if rest == "" else [rest]), False
    if cmd == "healthcheck":
        sep = _skip_run(rest, 0, spaces=False)
        if sep == 0:
            return [], False
        nxt = _skip_run(rest, sep, spaces=True)
        sub, sub_json = args_for("cmd", rest[nxt:], escape)
        return [rest[:sep], *sub], sub_json
    return [], False


def _fields(rest: str) -> list[str]:
    return [] if rest == "" else WS.split(rest)


def heredocs_in(line: str) -> list[tuple[str, bool, bool, int]]:
    """Heredoc markers on an instruction line: (name, expand, chomp, fd)."""
    found: list[tuple[str, bool, bool, int]] = []
    for word in raw_words(line, "\\", skip_unset=False):
        hd = heredoc_marker(word)
        if hd is not None:
            found.append(hd)
    return found


def heredoc_marker(word: str) -> tuple[str, bool, bool, int] | None:
    m = HEREDOC.match(word)
    if not m or not m.group(3):
        return None
    try:
        parsed = heredoc_word(m.group(3))
    except SubstitutionError as e:
        raise ParserError(e.detail) from None
    if parsed is None:
        return None
    name, expand_body = parsed
    return name, expand_body, m.group(2) == "-", int(m.group(1) or "0")


