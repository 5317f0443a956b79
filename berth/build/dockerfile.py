"""Dockerfile parser: text to stages of instructions, with Docker's rules and error wording.

Pure: no I/O, no substitution. The types it produces, and the questions asked of a parsed file (the
stages a target needs, ARG pairs, HealthConfig, heredoc sources), are in berth/build/dfmodel.py and
re-exported here. The representation of each instruction's `args`:

- FROM: whitespace-split words, `[image]` or `[image, "AS", name]`; the stage name is lower-cased
  on `Stage.name`.
- RUN, CMD, ENTRYPOINT, SHELL: exec form -> the JSON strings (`json_form=True`); shell form ->
  `[rest of the line after the flags]` (one string; `[]` when empty).
- COPY, ADD, VOLUME: exec form -> the JSON strings; else whitespace-split words (quotes kept).
  Heredoc sources appear as their `<<EOF` word; `heredoc_sources()` pairs them with content.
- ENV, LABEL: flattened pairs `[k1, v1, k2, v2, ...]`. `k=v` form: each word split at the first
  `=`, quotes and escapes still in the text (Docker removes them in the substitution step, so run
  `shellwords.expand` on keys and values). Legacy `ENV KEY value words`: `[KEY, "value words"]`.
- ARG: the words, each `name` or `name=value` (quotes kept); `arg_pairs()` splits them.
- EXPOSE: whitespace-split words. USER, WORKDIR, STOPSIGNAL, MAINTAINER: `[rest of line]`.
- HEALTHCHECK: `[TYPE, *cmd]` with TYPE as written (`NONE` or `CMD`) and cmd as for CMD;
  `healthcheck_config()` gives Docker's HealthConfig.
- ONBUILD: `[trigger text]` (the instruction without `ONBUILD`, heredoc bodies appended);
  `trigger()` parses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from berth.build.dfcheck import InstructionError, validate
from berth.build.dfcheck import parse_go_duration as parse_go_duration
from berth.build.dflex import (
    WS,
    Directives,
    ParserError,
    args_for,
    extract_flags,
    heredocs_in,
    is_comment,
    lstrip_go,
    split_lines,
    strip_go,
)
from berth.build.dfmodel import (
    Dockerfile,
    DockerfileError,
    Heredoc,
    Instruction,
    Stage,
    arg_pairs,
    healthcheck_config,
    heredoc_sources,
)

__all__ = [
    "DockerfileError", "Heredoc", "Instruction", "Stage", "Dockerfile", "parse", "parse_named",
    "parse_instruction", "SUBSTITUTED", "INSTRUCTIONS", "arg_pairs", "heredoc_sources",
    "healthcheck_config", "parse_go_duration",
]

INSTRUCTIONS = frozenset({
    "add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck", "label",
    "maintainer", "onbuild", "run", "shell", "stopsignal", "user", "volume", "workdir",
})

# Instructions whose arguments Docker substitutes variables in (the Dockerfile reference,
# "Environment replacement"; FROM only with ARGs declared before the first FROM). RUN, CMD,
# ENTRYPOINT, SHELL and HEALTHCHECK are left to the shell; ONBUILD triggers are substituted when
# they run in the child build.
SUBSTITUTED = frozenset({
    "add", "copy", "env", "expose", "from", "label", "stopsignal", "user", "volume", "workdir", "arg",
})

_LEADING_TABS = re.compile(r"^\t+", re.M)
_ONBUILD_PREFIX = re.compile(r"^[\s]*ONBUILD[\s]*", re.I)
_BOM = "\ufeff"
# Bounds: a Dockerfile is read whole by the caller (size-bounded there); instructions and
# heredocs per file are bounded here so a hostile file cannot make the parser build huge lists.
MAX_INSTRUCTIONS = 10_000


@dataclass
class _Node:
    line: str
    lineno: int
    end: int
    heredocs: tuple[Heredoc, ...]
    keyword: str
    cmd: str
    rest: str
    raw_flags: list[str]
    args: list[str]
    json_form: bool


def _node(line: str, escape: str, lineno: int, end: int, heredocs: tuple[Heredoc, ...]) -> _Node:
    """The parser-level split of an instruction line (moby's parser package)."""
    stripped = strip_go(line)
    parts = WS.split(stripped, maxsplit=1)
    keyword = parts[0]
    cmd = keyword.lower()
    rest, raw_flags = ("", []) if len(parts) < 2 else extract_flags(parts[1])
    rest = strip_go(rest)
    args, json_form = args_for(cmd, rest, escape) if cmd in INSTRUCTIONS else ([], False)
    return _Node(line, lineno, end, heredocs, keyword, cmd, rest, raw_flags, args, json_form)


def _instruction(node: _Node, escape: str) -> Instruction:
    """Validate a node into an Instruction (moby's instructions package)."""
    if node.cmd not in INSTRUCTIONS:
        raise InstructionError(f"unknown instruction: {node.keyword}")
    args = node.args
    flags, ordered = validate(node.cmd, args, node.json_form, node.raw_flags, node.heredocs)
    if node.cmd == "onbuild":
        trigger = _ONBUILD_PREFIX.sub("", node.line, count=1)
        for hd in node.heredocs:
            trigger += "\n" + hd.content + hd.name
        args = [trigger]
    return Instruction(cmd=node.cmd, args=args, json_form=node.json_form, flags=flags,
                       original=strip_go(node.line), lineno=node.lineno, heredocs=node.heredocs,
                       end_lineno=node.end, flag_list=ordered, keyword=node.keyword, escape=escape)


# ---------------------------------------------------------------------------------------------
# Whole-file parsing


def _parse_nodes(text: str) -> tuple[list[_Node], str, list[str]]:
    """Pass one (moby's parser): lines, directives, continuations, comments, heredocs."""
    d = Directives()
    lines = split_lines(text)
    out: list[_Node] = []
    warnings: list[str] = []
    i = 0
    n = len(lines)
    current = 0  # number of the last line read (1-based)
    while i < n:
        raw = lines[i]
        if i == 0 and raw.startswith(_BOM):
            raw = raw[len(_BOM):]
        i += 1
        first = lstrip_go(raw)
        try:
            d.possible(first)
        except ParserError as e:
            raise DockerfileError(str(e), current, in_instruction=False) from None
        current += 1
        start = current
        body = "" if first.startswith("#") else first
        line, end_of_line = d.trim_continuation(body)
        if end_of_line and line == "":
            continue
        empty_continuation = False
        while not end_of_line and i < n:
            raw = lines[i]
            i += 1
            try:
                d.possible(raw)
            except ParserError as e:
                raise DockerfileError(str(e), current, in_instruction=False) from None
            current += 1
            if is_comment(raw):
                continue
            if lstrip_go(raw) == "":
                empty_continuation = True
                continue
            # continuation lines keep their leading whitespace, as Docker's
            cont, end_of_line = d.trim_continuation(raw)
            line += cont
        if empty_continuation:
            warnings.append("[WARNING]: Empty continuation line found in:\n    " + line)
        try:
            node = _node(line, d.escape, start, current, ())
            markers = _heredoc_markers(node, d.escape) if "<<" in line else []
        except ParserError as e:
            raise DockerfileError(str(e), start, in_instruction=False) from None
        heredocs: list[Heredoc] = []
        for name, expand_body, chomp, fd in markers:
            body_lines: list[str] = []
            terminated = False
            while i < n:
                raw = lines[i]
                i += 1
                current += 1
                if (raw.lstrip("\t") if chomp else raw) == name:
                    terminated = True
                    break
                body_lines.append(raw + "\n")
            if not terminated:
                raise DockerfileError("unterminated heredoc", start, in_instruction=False)
            content = "".join(body_lines)
            if chomp:
                content = _LEADING_TABS.sub("", content)
            heredocs.append(Heredoc(name=name, content=content, expand=expand_body, chomp=chomp, fd=fd))
        node.heredocs = tuple(heredocs)
        node.end = current
        out.append(node)
        if len(out) > MAX_INSTRUCTIONS:
            raise DockerfileError(f"too many instructions (more than {MAX_INSTRUCTIONS})",
                                  start, in_instruction=False)
    if not out:
        raise DockerfileError("file with no instructions", current, in_instruction=False)
    return out, d.escape, warnings


def _heredoc_markers(node: _Node, escape: str) -> list[tuple[str, bool, bool, int]]:
    """Heredocs apply to RUN, COPY and ADD (also as an ONBUILD trigger), never in exec form."""
    target = node
    if node.cmd == "onbuild" and node.rest:
        target = _node(node.rest, escape, node.lineno, node.end, ())
    if target.cmd not in ("run", "copy", "add") or target.json_form:
        return []
    return heredocs_in(node.line)


def _instructions(nodes: list[_Node], escape: str) -> list[Instruction]:
    """Pass two (moby's instructions package): each node checked, in file order."""
    out: list[Instruction] = []
    for node in nodes:
        try:
            out.append(_instruction(node, escape))
        except InstructionError as e:
            raise DockerfileError(str(e), node.lineno) from None
    return out


def parse(text: str) -> Dockerfile:
    """Parse a Dockerfile; raises DockerfileError with Docker's message and line."""
    nodes, escape, warnings = _parse_nodes(text)
    instructions = _instructions(nodes, escape)
    meta: list[Instruction] = []
    stages: list[Stage] = []
    for inst in instructions:
        if inst.cmd == "from":
            name = inst.args[2].lower() if len(inst.args) == 3 else None
            stages.append(Stage(index=len(stages), name=name, from_=inst, instructions=[]))
        elif not stages:
            if inst.cmd == "arg":
                meta.append(inst)
            else:
                raise DockerfileError("no build stage in current context", inst.lineno,
                                      in_instruction=False)
        else:
            stages[-1].instructions.append(inst)
    return Dockerfile(escape=escape, meta_args=meta, stages=stages, warnings=warnings)


def parse_named(text: str, name: str = "Dockerfile") -> Dockerfile:
    """parse() with dockerd's wording for the named file: empty file, parser-level errors."""
    if text == "":
        raise DockerfileError(f"the Dockerfile ({name}) cannot be empty", in_instruction=False)
    try:
        return parse(text)
    except DockerfileError as e:
        if e.in_instruction or e.message == "no build stage in current context":
            raise
        raise DockerfileError(f"failed to parse {name}: {e.message}", e.lineno,
                              in_instruction=False) from None


def parse_instruction(line: str, escape: str = "\\") -> Instruction:
    """Parse one instruction (an ONBUILD trigger: may carry its heredoc bodies on later lines)."""
    prefix = "" if escape == "\\" else "# escape=`\n"
    try:
        nodes, escape, _ = _parse_nodes(prefix + line)
        if len(nodes) != 1:
            raise DockerfileError("expected exactly one instruction", 1, in_instruction=False)
        return _instructions(nodes, escape)[0]
    except DockerfileError as e:
        if prefix and e.lineno:
            e.lineno -= 1
        raise
