"""The part of Go's text/template that ``--format`` users write, over JSON-like Python values.

Supported: text and ``{{pipeline}}`` actions with ``{{-``/``-}}`` trimming; fields ``.A.B`` on dicts
(and on ``$var``), ``.`` and ``$``; string/number/bool literals; parenthesised pipelines; ``|``;
``if``/``else if``/``else``/``with``/``range`` (``range $k, $v := ...``, ``range $v := ...``) with
``end``; ``{{/* comments */}}``; the Go builtins (``index len printf print println eq ne lt le gt
ge and or not slice``) and Docker's additions (``json join split lower upper title pad truncate``).
Fields that are callables take the command's arguments (``{{.Label "com.x"}}`` in ``ps``).
"""

from __future__ import annotations

import json
import re

from berth.cli.gotemplate_funcs import FUNCS, TemplateError, to_text, truthy

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only on the hot path
if TYPE_CHECKING:
    from typing import Any

MAX_OUTPUT = 64 << 20  # a template cannot blow up memory with nested ranges

__all__ = ["Template", "TemplateError", "render", "unescape", "to_text"]


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
  | (?P<decl>:=)
  | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
  | (?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[|(),])
""", re.VERBOSE)


def _tokens(src: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if m is None:
            raise TemplateError(f"unexpected {src[pos]!r} in operand")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group()))
        pos = m.end()
    return out


# --- parse tree: lists of nodes; a node is str (text) or a tuple ---------------------------------

if TYPE_CHECKING:
    Node = Any


def parse(src: str) -> list[Node]:
    """Parse a template into nodes; raises TemplateError with Go's kind of message."""
    parts: list[tuple[str, str]] = []  # ("text", s) / ("action", s)
    pos = 0
    while True:
        i = src.find("{{", pos)
        if i < 0:
            parts.append(("text", src[pos:]))
            break
        j = src.find("}}", i + 2)
        if j < 0:
            raise TemplateError("unclosed action")
        text = src[pos:i]
        inner = src[i + 2:j]
        if inner.startswith("-") and (len(inner) == 1 or inner[1] in " \t\n\r"):
            text = text.rstrip()
            inner = inner[1:]
        trim_after = inner.endswith("-") and (len(inner) == 1 or inner[-2] in " \t\n\r")
        if trim_after:
            inner = inner[:-1]
        parts.append(("text", text))
        parts.append(("action", inner.strip()))
        pos = j + 2
        if trim_after:
            while pos < len(src) and src[pos] in " \t\n\r":
                pos += 1
    nodes, _, end = _parse_list(parts, 0)
    if end is not None:
        raise TemplateError(f"unexpected {{{{{end}}}}}")
    return nodes


def _parse_list(parts: list[tuple[str, str]], i: int) -> tuple[list[Node], int, str | None]:
    """Nodes until an ``end``/``else`` action (returned as the third item) or the end of input."""
    nodes: list[Node] = []
    while i < len(parts):
        kind, s = parts[i]
        i += 1
        if kind == "text":
            if s:
                nodes.append(s)
            continue
        if s.startswith("/*"):
            continue
        word = s.split(None, 1)[0] if s else ""
        if word == "end" or word == "else":
            return nodes, i, s
        if word in ("if", "with", "range"):
            node, i = _parse_block(word, s[len(word):].strip(), parts, i)
            nodes.append(node)
            continue
        if not s:
            raise TemplateError("missing value for command")
        nodes.append(("out", _parse_pipeline(s)))
    return nodes, i, None


def _parse_block(word: str, head: str, parts: list[tuple[str, str]], i: int) -> tuple[Node, int]:
    """An if/with/range block whose head is ``head``; consumes through its ``end``. ``else if``
    becomes a nested block that shares the outer block's ``end``."""
    body, i, term = _parse_list(parts, i)
    else_body: list[Node] = []
    if term is not None and term.startswith("else"):
        rest = term[4:].strip()
        w = rest.split(None, 1)[0] if rest else ""
        if w in ("if", "with"):
            sub, i = _parse_block(w, rest[len(w):].strip(), parts, i)
            else_body = [sub]
            term = "end"
        elif rest:
            raise TemplateError(f"unexpected {rest!r} after else")
        else:
            else_body, i, term = _parse_list(parts, i)
    if term != "end":
        raise TemplateError(f"unexpected EOF in {word}")
    if word == "range":
        names: list[str] = []
        m = re.match(r"^(\$\w*)\s*(?:,\s*(\$\w*))?\s*:=\s*(.*)$", head, re.S)
        if m:
            names = [v for v in (m.group(1), m.group(2)) if v]
            head = m.group(3)
        return ("range", names, _parse_pipeline(head), body, else_body), i
    return (word, _parse_pipeline(head), body, else_body), i


def _parse_pipeline(src: str) -> Node:
    toks = _tokens(src)
    pipe, pos = _pipe(toks, 0)
    if pos != len(toks):
        raise TemplateError(f"unexpected {toks[pos][1]!r} in command")
    return pipe


def _pipe(toks: list[tuple[str, str]], pos: int) -> tuple[Node, int]:
    cmds: list[list[Node]] = []
    cur: list[Node] = []
    while pos < len(toks):
        kind, s = toks[pos]
        if kind == "punct" and s == "|":
            if not cur:
                raise TemplateError("missing command before |")
            cmds.append(cur)
            cur = []
            pos += 1
        elif kind == "punct" and s == ")":
            break
        elif kind == "punct" and s == "(":
            sub, pos = _pipe(toks, pos + 1)
            if pos >= len(toks) or toks[pos][1] != ")":
                raise TemplateError("unclosed left paren")
            pos += 1
            node: Node = ("pipe", sub)
            if pos < len(toks) and toks[pos][0] == "field" and toks[pos][1] != ".":
                node = ("chain", node, toks[pos][1][1:].split("."))
                pos += 1
            cur.append(node)
        elif kind == "decl":
            raise TemplateError("variable declarations are supported only in range")
        else:
            cur.append(_operand(kind, s))
            pos += 1
    if not cur:
        raise TemplateError("missing value for command")
    cmds.append(cur)
    return ("cmds", cmds), pos


def _operand(kind: str, s: str) -> Node:
    if kind == "field":
        return ("field", [] if s == "." else s[1:].split("."))
    if kind == "var":
        name, _, rest = s.partition(".")
        return ("var", name, rest.split(".") if rest else [])
    if kind == "str":
        return ("lit", json.loads(s))
    if kind == "raw":
        return ("lit", s[1:-1])
    if kind == "num":
        return ("lit", float(s) if any(c in s for c in ".eE") else int(s))
    if kind == "ident":
        if s in ("true", "false"):
            return ("lit", s == "true")
        if s == "nil":
            return ("lit", None)
        return ("func", s)
    raise TemplateError(f"unexpected {s!r}")


# --- evaluation -----------------------------------------------------------------------------------

class Template:
    def __init__(self, src: str) -> None:
        self.src = src
        self.nodes = parse(src)

    def execute(self, data: Any) -> str:
        out: list[str] = []
        self._size = 0
        self._run(self.nodes, data, {"$": data}, out)
        return "".join(out)

    def _emit(self, out: list[str], s: str) -> None:
        self._size += len(s)
        if self._size > MAX_OUTPUT:
            raise TemplateError("template output too large")
        out.append(s)

    def _run(self, nodes: list[Node], dot: Any, vars_: dict[str, Any], out: list[str]) -> None:
        for n in nodes:
            if isinstance(n, str):
                self._emit(out, n)
            elif n[0] == "out":
                self._emit(out, to_text(self._pipe(n[1], dot, vars_)))
            elif n[0] in ("if", "with"):
                v = self._pipe(n[1], dot, vars_)
                if truthy(v):
                    self._run(n[2], v if n[0] == "with" else dot, vars_, out)
                else:
                    self._run(n[3], dot, vars_, out)
            elif n[0] == "range":
                _, names, pipe, body, else_body = n
                v = self._pipe(pipe, dot, vars_)
                items: list[tuple[Any, Any]]
                if isinstance(v, dict):
                    items = [(k, v[k]) for k in sorted(v)]
                elif isinstance(v, (list, tuple)):
                    items = list(enumerate(v))
                elif isinstance(v, int) and not isinstance(v, bool):
                    items = [(i, i) for i in range(min(v, 1 << 20))]
                elif v is None:
                    items = []
                else:
                    raise TemplateError(f"range can't iterate over {to_text(v)}")
                if not items:
                    self._run(else_body, dot, vars_, out)
                for k, item in items:
                    inner = dict(vars_)
                    if len(names) == 1:
                        inner[names[0]] = item
                    elif len(names) == 2:
                        inner[names[0]], inner[names[1]] = k, item
                    self._run(body, item, inner, out)

    def _pipe(self, pipe: Node, dot: Any, vars_: dict[str, Any]) -> Any:
        value: Any = None
        first = True
        for cmd in pipe[1]:
            args = [] if first else [value]
            value = self._cmd(cmd, dot, vars_, args)
            first = False
        return value

    def _cmd(self, cmd: list[Node], dot: Any, vars_: dict[str, Any], piped: list[Any]) -> Any:
        head = cmd[0]
        if head[0] == "func":
            fn = FUNCS.get(head[1])
            if fn is None:
                raise TemplateError(f'function "{head[1]}" not defined')
            args = [self._arg(a, dot, vars_) for a in cmd[1:]] + piped
            try:
                return fn(*args)
            except TemplateError:
                raise
            except (TypeError, ValueError, AttributeError) as e:
                raise TemplateError(f"error calling {head[1]}: {e}") from e
        if head[0] in ("field", "var", "chain") and (len(cmd) > 1 or piped):
            target = self._arg(head, dot, vars_)
            if callable(target):
                return target(*[self._arg(a, dot, vars_) for a in cmd[1:]], *piped)
            raise TemplateError(f"can't give argument to non-function {self._describe(head)}")
        if len(cmd) > 1:
            raise TemplateError(f"can't give argument to non-function {self._describe(head)}")
        return self._arg(head, dot, vars_)

    @staticmethod
    def _describe(node: Node) -> str:
        if node[0] == "field":
            return "." + ".".join(node[1])
        if node[0] == "var":
            return str(node[1])
        return to_text(node[1]) if node[0] == "lit" else "expression"

    def _arg(self, node: Node, dot: Any, vars_: dict[str, Any]) -> Any:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "field":
            return self._walk(dot, node[1])
        if kind == "var":
            if node[1] not in vars_:
                raise TemplateError(f"undefined variable: {node[1]}")
            return self._walk(vars_[node[1]], node[2])
        if kind == "pipe":
            return self._pipe(node[1], dot, vars_)
        if kind == "chain":
            return self._walk(self._arg(node[1], dot, vars_), node[2])
        if kind == "func":
            fn = FUNCS.get(node[1])
            if fn is None:
                raise TemplateError(f'function "{node[1]}" not defined')
            return fn()
        raise TemplateError("bad operand")

    @staticmethod
    def _walk(v: Any, path: list[str]) -> Any:
        for name in path:
            if isinstance(v, dict):
                v = v.get(name)
            elif v is None:
                return None
            else:
                attr = getattr(v, name, None)
                if attr is None:
                    raise TemplateError(f"can't evaluate field {name} in type {type(v).__name__}")
                v = attr
        return v


def render(src: str, data: Any) -> str:
    return Template(src).execute(data)


def unescape(fmt: str) -> str:
    """Docker expands the two-character escapes ``\\t`` and ``\\n`` in ``--format`` strings."""
    return fmt.replace("\\t", "\t").replace("\\n", "\n")
