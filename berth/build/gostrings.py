"""Go's string rules that Docker's Dockerfile front end shows through: which characters are space, and %q.

moby's lexers split on Go's unicode.IsSpace, not Python's str.isspace, and its error messages quote
words with Go's %q; matching both keeps berth's splitting and wording Docker's. They are apart from
berth/build/shellwords.py because the Dockerfile lexer (dflex.py) and the variable patterns
(shellpattern.py) need them too, and neither is a part of word expansion.
"""

from __future__ import annotations

# Go's unicode.IsSpace (Latin-1 plus the White_Space property), which moby's lexers use.
GO_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)


def is_go_space(ch: str) -> bool:
    return ch in GO_SPACES


def go_quote(s: str) -> str:
    """Go's %q for a string (enough for error messages: printable text, common escapes)."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)
