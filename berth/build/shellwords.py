"""Docker's word processing for Dockerfile instructions (the ShellLex rules).

What the Dockerfile reference documents under "Environment replacement": `$VAR`, `${VAR}`,
`${VAR:-word}`, `${VAR:+word}`, `${VAR-word}`, `${VAR+word}`, `${VAR:?msg}`, `${VAR?msg}`,
`${VAR#pat}`, `${VAR##pat}`, `${VAR%pat}`, `${VAR%%pat}`, `${VAR/pat/repl}`, `${VAR//pat/repl}`;
single quotes are literal, double quotes allow `$` and escape only `"`, `$` and the escape
character; the escape character outside quotes makes the next character literal; quotes are
removed from the result. `expand_words` also splits into words the way EXPOSE and friends need:
whitespace splits, except inside quotes or when escaped; a variable's value is split too.

The pattern modifiers' matching is in berth/build/shellpattern.py, Go's space and quoting rules in
berth/build/gostrings.py (re-exported here for the Dockerfile lexer).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from berth.build import shellpattern
from berth.build.gostrings import GO_SPACES, go_quote, is_go_space

__all__ = [
    "SubstitutionError", "expand", "expand_words", "raw_words", "go_quote", "is_go_space",
    "parse_key_values", "heredoc_word",
]

_EOF = ""
# Bounds against hostile Dockerfiles: nested ${a:-${b:-...}} depth and the size of one expansion.
MAX_DEPTH = 64
MAX_RESULT = 4 * 1024 * 1024

_SPACE_RUNS = re.compile("([" + re.escape("".join(sorted(GO_SPACES))) + "]+)")


class SubstitutionError(ValueError):
    """A word Docker refuses to process; str() is moby's `failed to process "<word>": <why>`."""

    def __init__(self, word: str, detail: str) -> None:
        super().__init__(detail)
        self.word = word
        self.detail = detail

    def __str__(self) -> str:
        return f"failed to process {go_quote(self.word)}: {self.detail}"


class _LexError(Exception):
    pass


@dataclass
class _Words:
    """Word accumulation as Docker's ProcessWords does it. The current word is kept as a list of
    pieces (joined when it ends): appending to a str attribute copies it each time, which made a
    megabyte-long $VAR cost minutes of CPU in the daemon's event loop."""

    parts: list[str] = field(default_factory=list)
    size: int = 0
    words: list[str] = field(default_factory=list)
    in_word: bool = False

    def _flush(self) -> None:
        self.words.append("".join(self.parts))
        self.parts = []
        self.size = 0
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if is_go_space(ch):
            if self.in_word and self.size:
                self._flush()
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.parts.append(ch)
        self.size += len(ch)
        self.in_word = True

    def add_string(self, s: str) -> None:
        # runs of non-space text are added whole; each space run acts as one add_char of a space
        for piece in _SPACE_RUNS.split(s):
            if not piece:
                continue
            if is_go_space(piece[0]):
                self.add_char(piece[0])
            else:
                self.add_raw_string(piece)

    def add_raw_string(self, s: str) -> None:
        self.parts.append(s)
        self.size += len(s)
        self.in_word = True

    def get(self) -> list[str]:
        if self.size:
            self._flush()
        return self.words


def _is_special_param(ch: str) -> bool:
    return ch in "@*#?-$!0"


class _Lexer:
    def __init__(
        self, text: str, env: Mapping[str, str], escape: str, *,
        raw_quotes: bool = False, raw_escapes: bool = False, skip_unset: bool = False,
    ) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset
        self.depth = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else _EOF

    def next(self) -> str:
        if self.pos >= len(self.text):
            return _EOF
        ch = self.text[self.pos]
        self.pos += 1
        return ch

    def process(self) -> tuple[str, list[str]]:
        return self.stop_on(_EOF, self.raw_escapes)

    def stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _LexError("substitution nested too deeply")
        try:
            return self._stop_on(stop, raw_escapes)
        finally:
            self.depth -= 1

    def _stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        result: list[str] = []
        size = 0
        words = _Words()
        while self.peek() != _EOF:
            ch = self.peek()
            if stop != _EOF and ch == stop:
                self.next()
                return "".join(result), words.get()
            if ch in ("'", '"', "$"):
                if ch == "'":
                    tmp = self.single_quote()
                elif ch == '"':
                    tmp = self.double_quote()
                else:
                    tmp = self.dollar()
                result.append(tmp)
                size += len(tmp)
                if ch == "$":
                    words.add_string(tmp)
                else:
                    words.add_raw_string(tmp)
            else:
                ch = self.next()
                if ch == self.escape:
                    if raw_escapes:
                        words.add_raw_char(ch)
                        result.append(ch)
                    ch = self.next()
                    if ch == _EOF:
                        break
                    words.add_raw_char(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
                size += 1
            if size > MAX_RESULT:
                raise _LexError("expansion too large")
        if stop != _EOF:
            raise _LexError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.get()

    def single_quote(self) -> str:
        # Everything up to the next ' is literal; a ' cannot be escaped inside.
        out: list[str] = []
        ch = self.next()
        if self.raw_quotes:
            out.append(ch)
        while True:
            ch = self.next()
            if ch == _EOF:
                raise _LexError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        # Literal except $ expansions; the escape character escapes only " $ and itself.
        out: list[str] = []
        ch = self.next()
        if self.raw_quotes:
            out.append(ch)
        while True:
            p = self.peek()
            if p == _EOF:
                raise _LexError("unexpected end of statement while looking for matching double-quote")
            if p == '"':
                ch = self.next()
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if p == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                if self.raw_escapes:
                    out.append(ch)
                nxt = self.peek()
                if nxt == _EOF:
                    continue
                if nxt in ('"', "$", self.escape):
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        # Alphanumerics and _; a leading digit reads digits only; one special parameter char.
        out: list[str] = []
        while self.peek() != _EOF:
            ch = self.peek()
            if not out and ch.isdigit():
                while self.peek() != _EOF and self.peek().isdigit():
                    out.append(self.next())
                return "".join(out)
            if not out and _is_special_param(ch):
                return self.next()
            if not (ch.isalpha() or ch.isdigit() or ch == "_"):
                break
            out.append(self.next())
        return "".join(out)

    def lookup(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            return self.env[name], True
        return "", False

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.lookup(name)
            if not found and self.skip_unset:
                return "$" + name
            return value
        self.next()
        p = self.peek()
        if p == _EOF:
            raise _LexError("syntax error: missing '}'")
        if p in ("{", "}", ":"):
            raise _LexError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if ch == _EOF:
            raise _LexError("syntax error: missing '}'")
        if ch == "}":
            value, found = self.lookup(name)
            if not found and self.skip_unset:
                return "${" + name + "}"
            return value
        chs = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            chs += ch
        if ch in ("+", "-", "?", "#", "%"):
            raw_escapes = ch in ("#", "%")
            if null_is_unset and raw_escapes:
                raise _LexError(f"unsupported modifier ({chs}) in substitution")
            word = self._word_until_brace(raw_escapes)
            value, found = self.lookup(name)
            if self.skip_unset and not found:
                return "${" + name + chs + word + "}"
            if ch == "-":
                return word if (not found or (null_is_unset and value == "")) else value
            if ch == "+":
                return "" if (not found or (null_is_unset and value == "")) else word
            if ch == "?":
                if not found:
                    raise _LexError(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise _LexError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            greedy = word.startswith(ch)
            if greedy:
                word = word[1:]
            try:
                return shellpattern.trim(value, word, self.escape, prefix=(ch == "#"), greedy=greedy)
            except shellpattern.PatternTooCostly as e:
                raise _LexError(str(e)) from None
        if ch == "/" and not null_is_unset:
            replace_all = self.peek() == "/"
            if replace_all:
                self.next()
            try:
                pattern, _ = self.stop_on("/", True)
            except _LexError:
                if self.peek() == _EOF:
                    raise _LexError("syntax error: missing '/' in ${}") from None
                raise
            replacement = self._word_until_brace(True)
            value, found = self.lookup(name)
            if self.skip_unset and not found:
                return "${" + name + "/" + ("/" if replace_all else "") + pattern + "/" + replacement + "}"
            try:
                return shellpattern.replace(value, pattern, replacement, self.escape, replace_all=replace_all)
            except shellpattern.PatternTooCostly as e:
                raise _LexError(str(e)) from None
        raise _LexError(f"unsupported modifier ({chs}) in substitution")

    def _word_until_brace(self, raw_escapes: bool) -> str:
        try:
            word, _ = self.stop_on("}", raw_escapes)
        except _LexError:
            if self.peek() == _EOF:
                raise _LexError("syntax error: missing '}'") from None
            raise
        return word


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Substitute variables in one word and remove quotes, as Docker's ProcessWord."""
    try:
        result, _ = _Lexer(word, env, escape).process()
    except _LexError as e:
        raise SubstitutionError(word, str(e)) from None
    return result


def expand_words(word: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Substitute and split into words, as Docker's ProcessWords (quoted text is not split)."""
    try:
        _, words = _Lexer(word, env, escape).process()
    except _LexError as e:
        raise SubstitutionError(word, str(e)) from None
    return words


def raw_words(line: str, escape: str = "\\", *, skip_unset: bool = True) -> list[str]:
    """Words of a line with quotes and escapes kept (how the parser finds heredoc markers)."""
    lexer = _Lexer(line, {}, escape, raw_quotes=True, raw_escapes=True, skip_unset=skip_unset)
    try:
        _, words = lexer.process()
    except _LexError:
        return []
    return words


def heredoc_word(rest: str) -> tuple[str, bool] | None:
    """The heredoc delimiter after `<<`/`<<-`: (name with quotes removed, expand?) or None.

    A delimiter with any quoted part disables expansion of the body (as in sh); Docker detects
    that by lexing the word with and without quote removal and comparing the quote counts.
    """
    try:
        plain = _Lexer(rest, {}, "\\", skip_unset=True).process()[1]
        raw = _Lexer(rest, {}, "\\", skip_unset=True, raw_quotes=True).process()[1]
    except _LexError as e:
        raise SubstitutionError(rest, str(e)) from None
    if len(plain) != 1 or len(raw) != 1:
        return None
    quotes_plain = plain[0].count("'") + plain[0].count('"')
    quotes_raw = raw[0].count("'") + raw[0].count('"')
    return plain[0], quotes_plain == quotes_raw


def parse_key_values(pairs: list[str], env: Mapping[str, str], escape: str = "\\") -> list[tuple[str, str]]:
    """Substitute flattened [k1, v1, k2, v2] pairs (ENV/LABEL args) with the env in effect.

    ENV keys and values are both substituted (as Docker does); each value is one word, so its
    whitespace is kept and only quotes/escapes are removed. For ENV the caller should extend `env`
    with each new pair before processing the next one only when Docker does: it does not —
    every pair of one ENV instruction is substituted with the env from before the instruction.
    """
    out: list[tuple[str, str]] = []
    for i in range(0, len(pairs) - 1, 2):
        out.append((expand(pairs[i], env, escape), expand(pairs[i + 1], env, escape)))
    return out
