"""A parsed Dockerfile: its types, and the questions the builder asks of them.

Holds what berth/build/dockerfile.py's parser produces (Instruction, Heredoc, Stage, Dockerfile, and the
DockerfileError both raise) and the readings of it that come after parsing: which stages a target needs
(FROM <stage>, COPY --from, meta ARGs substituted), ARG pairs, HEALTHCHECK as Docker's HealthConfig,
COPY/ADD heredoc sources. It is apart from the parser because these are questions about the result, not
about the text: the parser's line, continuation and heredoc passes can be read without them, and these
without the parser. The representation of each instruction's ``args`` is described in dockerfile.py;
everything here is importable from there too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from berth.build.dfcheck import InstructionError, flag_duration
from berth.build.dflex import heredoc_marker
from berth.build.shellwords import SubstitutionError, expand


class DockerfileError(Exception):
    """A Dockerfile Docker would refuse. `message` is the bare reason, `lineno` 1-based (0: none).

    `in_instruction` errors (an instruction's arguments are wrong) read as moby's
    "dockerfile parse error on line N: <message>"; parser-level errors (directives, heredocs, a
    file with no instructions) read as the bare message, which dockerd wraps as
    "failed to parse <Dockerfile name>: <message>" (`parse_named` does that).
    """

    def __init__(self, message: str, lineno: int = 0, *, in_instruction: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.lineno = lineno
        self.in_instruction = in_instruction

    def __str__(self) -> str:
        if self.in_instruction and self.lineno:
            return f"dockerfile parse error on line {self.lineno}: {self.message}"
        return self.message


@dataclass(frozen=True)
class Heredoc:
    name: str
    content: str          # body lines joined with "\n" (each line ends in "\n"); tabs removed for <<-
    expand: bool          # False when the delimiter was quoted (<<"EOF", <<'EOF')
    chomp: bool = False   # <<- form
    fd: int = 0           # 3<<EOF form; 0 when not given


@dataclass(frozen=True)
class Instruction:
    cmd: str
    args: list[str]
    json_form: bool
    flags: dict[str, str]
    original: str
    lineno: int
    heredocs: tuple[Heredoc, ...] = ()
    end_lineno: int = 0
    # Every flag in order, repeats kept (--mount, --exclude may repeat; `flags` keeps the last).
    flag_list: tuple[tuple[str, str], ...] = ()
    keyword: str = ""     # the instruction word as written
    escape: str = "\\"

    def trigger(self) -> Instruction:
        """The instruction an ONBUILD registers."""
        if self.cmd != "onbuild":
            raise ValueError("not an ONBUILD instruction")
        from berth.build.dockerfile import parse_instruction  # the parser builds Instructions: imported here

        return parse_instruction(self.args[0], self.escape)

    def __hash__(self) -> int:
        return hash((self.cmd, self.original, self.lineno))


@dataclass
class Stage:
    index: int
    name: str | None
    from_: Instruction
    instructions: list[Instruction] = field(default_factory=list)

    @property
    def base(self) -> str:
        """The FROM image or stage name as written (not yet substituted)."""
        return self.from_.args[0]


@dataclass
class Dockerfile:
    escape: str
    meta_args: list[Instruction]
    stages: list[Stage]
    warnings: list[str] = field(default_factory=list)

    def stage_by_name(self, name: str) -> int | None:
        low = name.lower()
        for st in self.stages:
            if st.name is not None and st.name == low:
                return st.index
        return None

    def stage_for_target(self, target: str | None) -> int:
        if not self.stages:
            raise DockerfileError("no build stage in current context", in_instruction=False)
        if not target:
            return len(self.stages) - 1
        idx = self.stage_by_name(target)
        if idx is None:
            raise DockerfileError(f"failed to reach build target {target} in Dockerfile",
                                  in_instruction=False)
        return idx

    def meta_arg_defaults(self, build_args: dict[str, str | None] | None = None) -> dict[str, str]:
        """The ARGs before the first FROM, with defaults substituted in order, overridden by build args."""
        env: dict[str, str] = {}
        given = build_args or {}
        for inst in self.meta_args:
            for name, default in arg_pairs(inst):
                value = given.get(name)
                if value is None and default is not None:
                    try:
                        value = expand(default, env, self.escape)
                    except SubstitutionError:
                        value = default
                if value is not None:
                    env[name] = value
        return env

    def base_stage(self, index: int, build_args: dict[str, str | None] | None = None) -> int | None:
        """The earlier stage a stage is built FROM, or None for an image."""
        env = self.meta_arg_defaults(build_args)
        try:
            base = expand(self.stages[index].base, env, self.escape)
        except SubstitutionError:
            return None
        found = self.stage_by_name(base)
        return found if found is not None and found < index else None

    def copy_from_stage(self, index: int, ref: str) -> int | None:
        """The stage a `COPY --from=<ref>` in stage `index` names, or None (an image reference)."""
        if ref.isdigit():
            n = int(ref)
            return n if n < index else None
        found = self.stage_by_name(ref)
        return found if found is not None and found < index else None

    def needed_stages(self, target: str | None, build_args: dict[str, str | None] | None = None) -> list[int]:
        """Stages the target depends on (FROM <stage>, COPY --from=<stage|index>), itself included."""
        root = self.stage_for_target(target)
        env = self.meta_arg_defaults(build_args)
        seen: set[int] = set()
        todo = [root]
        while todo:
            i = todo.pop()
            if i in seen:
                continue
            seen.add(i)
            base = self.base_stage(i, build_args)
            if base is not None:
                todo.append(base)
            for inst in self.stages[i].instructions:
                ref = inst.flags.get("from") if inst.cmd == "copy" else None
                if ref:
                    try:
                        ref = expand(ref, env, self.escape)
                    except SubstitutionError:
                        continue
                    dep = self.copy_from_stage(i, ref)
                    if dep is not None:
                        todo.append(dep)
        return sorted(seen)


def healthcheck_config(inst: Instruction) -> dict[str, object]:
    """Docker's HealthConfig for a HEALTHCHECK instruction (durations in nanoseconds)."""
    if inst.cmd != "healthcheck":
        raise ValueError("not a HEALTHCHECK instruction")
    typ = inst.args[0].upper()
    if typ == "NONE":
        return {"Test": ["NONE"]}
    test = ["CMD" if inst.json_form else "CMD-SHELL", *inst.args[1:]]
    try:
        cfg: dict[str, object] = {"Test": test}
        for key, flag in (("Interval", "interval"), ("Timeout", "timeout"),
                          ("StartPeriod", "start-period"), ("StartInterval", "start-interval")):
            ns = flag_duration(inst.flags, flag)
            if ns:
                cfg[key] = ns
    except InstructionError as e:
        raise DockerfileError(str(e), inst.lineno) from None
    retries = inst.flags.get("retries", "")
    if retries:
        cfg["Retries"] = int(retries)
    return cfg


def arg_pairs(inst: Instruction) -> list[tuple[str, str | None]]:
    """ARG words as (name, default or None); the default is not yet substituted."""
    out: list[tuple[str, str | None]] = []
    for word in inst.args:
        if "=" in word:
            k, _, v = word.partition("=")
            out.append((k, v))
        else:
            out.append((word, None))
    return out


def heredoc_sources(inst: Instruction) -> tuple[list[str], list[Heredoc], str]:
    """COPY/ADD: (source paths, inline heredoc files in order, destination)."""
    if inst.cmd not in ("copy", "add"):
        raise ValueError("not a COPY/ADD instruction")
    by_name = {hd.name: hd for hd in inst.heredocs}
    paths: list[str] = []
    inline: list[Heredoc] = []
    for src in inst.args[:-1]:
        marker = None if inst.json_form else heredoc_marker(src)
        if marker is not None:
            hd = by_name.get(marker[0])
            inline.append(hd if hd is not None else Heredoc(marker[0], "", marker[1], marker[2], marker[3]))
        else:
            paths.append(src)
    return paths, inline, inst.args[-1]
