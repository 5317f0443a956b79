"""The executor's view of the Dockerfile front end (berth.build.dockerfile, shellwords): the
stages a target needs, each instruction's arguments after substitution, platform args.
Substitution errors become the 400/in-stream errors the API reports."""

from __future__ import annotations

from typing import Any

from berth.build import dockerfile as dfmod
from berth.build import shellwords
from berth.errors import InvalidParameter

Dockerfile = dfmod.Dockerfile
Instruction = dfmod.Instruction
Context = Any  # berth.build.context.BuildContext


def escape(df: Dockerfile) -> str:
    return df.escape


def platform_args(platform: str) -> dict[str, str]:
    """TARGETPLATFORM and friends: this engine builds for linux/amd64 (a platform asking for
    another architecture is refused before the build)."""
    plat = platform or "linux/amd64"
    os_, _, rest = plat.partition("/")
    arch, _, variant = rest.partition("/")
    out = {"TARGETPLATFORM": plat, "TARGETOS": os_, "TARGETARCH": arch, "TARGETVARIANT": variant}
    out.update({"BUILDPLATFORM": "linux/amd64", "BUILDOS": "linux", "BUILDARCH": "amd64", "BUILDVARIANT": ""})
    return out


def meta_args(df: Dockerfile) -> list[tuple[str, str | None]]:
    return [pair for inst in df.meta_args for pair in dfmod.arg_pairs(inst)]


def needed_stages(df: Dockerfile, target: str, build_args: dict[str, str | None]) -> list[int]:
    try:
        return df.needed_stages(target or None, build_args)
    except dfmod.DockerfileError as e:
        raise InvalidParameter(str(e)) from None


def instructions(df: Dockerfile, index: int) -> list[Instruction]:
    """The stage's instructions, its FROM first."""
    stage = df.stages[index]
    return [stage.from_, *stage.instructions]


def stage_index(df: Dockerfile, name: str, before: int) -> int | None:
    found = df.stage_by_name(name)
    return found if found is not None and found < before else None


def expand(word: str, env: dict[str, str], esc: str) -> str:
    try:
        return shellwords.expand(word, env, esc)
    except shellwords.SubstitutionError as e:
        raise InvalidParameter(str(e)) from None


def words(inst: Instruction, env: dict[str, str], esc: str) -> list[str]:
    """The arguments after substitution: one word each (exec form and single-word instructions),
    or split as Docker's ProcessWords does (EXPOSE, VOLUME)."""
    if inst.json_form:
        return [expand(a, env, esc) if inst.cmd in dfmod.SUBSTITUTED else a for a in inst.args]
    if inst.cmd in ("expose", "volume"):
        try:
            return [w for a in inst.args for w in shellwords.expand_words(a, env, esc)]
        except shellwords.SubstitutionError as e:
            raise InvalidParameter(str(e)) from None
    return [expand(a, env, esc) for a in inst.args]


def pairs(inst: Instruction, env: dict[str, str], esc: str) -> list[tuple[str, str]]:
    try:
        return shellwords.parse_key_values(inst.args, env, esc)
    except shellwords.SubstitutionError as e:
        raise InvalidParameter(str(e)) from None


def arg_decls(inst: Instruction, env: dict[str, str], esc: str) -> list[tuple[str, str | None]]:
    return [(expand(name, env, esc), None if default is None else expand(default, env, esc))
            for name, default in dfmod.arg_pairs(inst)]


def command_args(inst: Instruction) -> list[str]:
    """RUN/CMD/ENTRYPOINT/SHELL: the exec-form strings or the shell-form text (not substituted)."""
    return list(inst.args)


def rest_text(inst: Instruction) -> str:
    return inst.args[0] if inst.args else ""


def healthcheck(inst: Instruction) -> dict[str, object]:
    try:
        return dfmod.healthcheck_config(inst)
    except dfmod.DockerfileError as e:
        raise InvalidParameter(str(e)) from None


def parse_trigger(text: str, esc: str) -> list[Instruction]:
    try:
        return [dfmod.parse_instruction(text, esc)]
    except dfmod.DockerfileError as e:
        raise InvalidParameter(str(e)) from None


def with_heredocs(inst: Instruction, argv: list[str], shell: list[str]) -> list[str]:
    """A shell-form RUN with heredocs: ``RUN <<EOF`` alone runs the body as the script; otherwise
    the bodies are appended to the command line, which the shell reads as here-documents."""
    if not inst.heredocs or inst.json_form:
        return argv
    line = inst.args[0] if inst.args else ""
    if len(inst.heredocs) == 1 and line.strip().lstrip("0123456789").startswith("<<") and \
            len(line.split()) == 1:
        return [*shell, inst.heredocs[0].content]
    script = line
    for hd in inst.heredocs:
        script += "\n" + hd.content + hd.name
    return [*shell, script]
