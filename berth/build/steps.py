"""What each instruction does in a build (berth.build.builder runs them in order)."""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from berth.build import config as cfgops
from berth.build import front
from berth.errors import InvalidParameter

if TYPE_CHECKING:
    from berth.build.builder import Build, StageState

JSON = dict[str, Any]
_NOT_TRIGGERS = ("ONBUILD", "FROM", "MAINTAINER")
# Flags the Dockerfile front end parses but this builder does not implement. Docker's classic
# builder refuses them at their step rather than ignoring them: a silently skipped --mount or
# ADD --checksum would build something other than what the Dockerfile asks for.
_BUILDKIT_ONLY = {"RUN": ("mount", "network", "security", "device"),
                  "ADD": ("checksum", "exclude", "keep-git-dir", "unpack"),
                  "COPY": ("exclude", "parents")}


def _refuse_buildkit_flags(name: str, inst: front.Instruction) -> None:
    for flag, value in inst.flag_list:
        if flag in _BUILDKIT_ONLY.get(name, ()) and value != "false":
            raise InvalidParameter(f"the --{flag} option requires BuildKit. Refer to "
                                   "https://docs.docker.com/go/buildkit/ to learn how to build images with "
                                   "BuildKit enabled")


def say(text: str) -> JSON:
    return {"stream": text}


async def dispatch(b: Build, st: StageState, inst: front.Instruction) -> AsyncIterator[JSON]:
    name = inst.cmd.upper()
    _refuse_buildkit_flags(name, inst)
    env = b.sub_env(st)
    esc = front.escape(b.df)
    if name == "ARG":
        declared = arg(b, st, inst)
        async for msg in b.config_step(st, name, lambda c: "ARG " + declared):
            yield msg
        return
    if name == "RUN":
        async for msg in run(b, st, inst):
            yield msg
        return
    if name in ("COPY", "ADD"):
        from berth.build.copying import copy_step

        async for msg in copy_step(b, st, inst, name):
            yield msg
        return
    if name == "WORKDIR":
        async for msg in workdir(b, st, front.words(inst, env, esc)):
            yield msg
        return
    change: Any
    if name == "ENV":
        pairs = front.pairs(inst, env, esc)
        change = lambda c: cfgops.set_env(c, pairs)  # noqa: E731
    elif name == "LABEL":
        pairs = front.pairs(inst, env, esc)
        change = lambda c: cfgops.set_labels(c, pairs)  # noqa: E731
    elif name == "CMD":
        args = front.command_args(inst)
        st.cmd_set = True
        change = lambda c: cfgops.set_cmd(c, args, inst.json_form)  # noqa: E731
    elif name == "ENTRYPOINT":
        args = front.command_args(inst)
        cmd_set = st.cmd_set
        change = lambda c: cfgops.set_entrypoint(c, args, inst.json_form, cmd_set)  # noqa: E731
    elif name == "EXPOSE":
        ports = front.words(inst, env, esc)
        change = lambda c: cfgops.expose(c, ports)  # noqa: E731
    elif name == "VOLUME":
        paths = front.words(inst, env, esc)
        change = lambda c: cfgops.volume(c, paths)  # noqa: E731
    elif name == "USER":
        who = _one(inst, front.words(inst, env, esc))
        change = lambda c: cfgops.user(c, who)  # noqa: E731
    elif name == "STOPSIGNAL":
        sig = _one(inst, front.words(inst, env, esc))
        change = lambda c: cfgops.stopsignal(c, sig)  # noqa: E731
    elif name == "HEALTHCHECK":
        hc = front.healthcheck(inst)
        change = lambda c: cfgops.set_healthcheck(c, hc)  # noqa: E731
    elif name == "SHELL":
        args = front.command_args(inst)
        change = lambda c: cfgops.shell(c, args, inst.json_form)  # noqa: E731
    elif name == "ONBUILD":
        expr = front.rest_text(inst)
        first = expr.split(None, 1)[0].upper() if expr.strip() else ""
        if first in _NOT_TRIGGERS:
            raise InvalidParameter(f"{first} isn't allowed as an ONBUILD trigger")
        change = lambda c: cfgops.onbuild(c, expr)  # noqa: E731
    elif name == "MAINTAINER":
        who = front.rest_text(inst)
        st.author = who
        change = lambda c: "MAINTAINER " + who  # noqa: E731
    else:
        raise InvalidParameter(f"dockerfile parse error line {inst.lineno}: unknown instruction: {inst.cmd.upper()}")
    async for msg in b.config_step(st, name, change):
        yield msg


def _one(inst: front.Instruction, words: list[str]) -> str:
    if len(words) != 1:
        raise InvalidParameter(f"{inst.cmd.upper()} requires exactly one argument")
    return words[0]


def arg(b: Build, st: StageState, inst: front.Instruction) -> str:
    """Declare the ARGs; return the history text (``NAME`` or ``NAME=default`` as written)."""
    texts = []
    meta = b.meta_env()
    for name, default in front.arg_decls(inst, b.sub_env(st), front.escape(b.df)):
        if name in b.opts.build_args:
            b.used_args.add(name)
            value = b.opts.build_args[name]
            if value is None:
                value = default
        elif default is not None:
            value = default
        else:
            value = meta.get(name)  # a global ARG (or a platform arg) of the same name
        st.args[name] = value
        texts.append(name if default is None else f"{name}={default}")
    return " ".join(texts)


async def run(b: Build, st: StageState, inst: front.Instruction) -> AsyncIterator[JSON]:
    argv = cfgops.command(st.config, front.command_args(inst), inst.json_form)
    argv = front.with_heredocs(inst, argv, b.shell(st))
    in_effect = b.args_in_effect(st)
    own_env = cfgops.env_map(st.config)
    build_env = [f"{k}={v}" for k, v in sorted(in_effect.items()) if k not in own_env]
    save_cmd = [f"|{len(build_env)}", *build_env, *argv] if build_env else argv
    created_by = " ".join(save_cmd)
    key = b.key(st, created_by)
    hit = False
    async for msg in b.cached(st, key, created_by, st.config):
        hit = True
        yield msg
    if hit:
        return
    body: JSON = {"Env": build_env, "AttachStdout": True, "AttachStderr": True,
                  "Healthcheck": {"Test": ["NONE"]}, "HostConfig": b.opts.host_config()}
    sc = await b.new_container(st, argv, body)
    yield say(f" ---> Running in {sc.id[:12]}\n")
    code = 255
    import codecs

    text = codecs.getincrementaldecoder("utf-8")("replace")  # a character may span two writes
    async for item in sc.run():
        if isinstance(item, int):
            code = item
        elif not b.opts.quiet and (out := text.decode(item)):
            yield say(out)
    if not b.opts.quiet and (out := text.decode(b"", final=True)):
        yield say(out)
    if code != 0:
        from berth.build.builder import StepFailed

        raise StepFailed(f"The command '{' '.join(argv)}' returned a non-zero code: {code}", code)
    cfg = b.image_config(st, {"created": b.now(), "created_by": created_by})
    iid = await sc.commit(st.image_id, cfg, b.clamp)
    async for msg in b.finish_container(sc):
        yield msg
    async for msg in b.made(st, key, iid):
        yield msg


def _dir_tar(paths: list[str], mtime: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for p in paths:
            ti = tarfile.TarInfo(p.lstrip("/") + "/")
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, mtime
            tf.addfile(ti)
    return buf.getvalue()


async def workdir(b: Build, st: StageState, words: list[str]) -> AsyncIterator[JSON]:
    """WORKDIR sets the config and, as Docker does, creates the directory when the image lacks it:
    a layer only then (Docker 20.10 commits an empty layer even when the directory exists)."""
    path = _one_path(words)
    new = dict(st.config)
    comment = cfgops.workdir(new, path)
    created_by = " ".join([*b.shell(st), "#(nop) " + comment])  # one space, as Docker's WORKDIR
    key = b.key(st, created_by)
    hit = False
    async for msg in b.cached(st, key, created_by, new):
        hit = True
        yield msg
    if hit:
        return
    target = new["WorkingDir"]
    sc = await b.new_container(st, [*b.shell(st), "#(nop) " + comment], {})
    yield say(f" ---> Running in {sc.id[:12]}\n")
    missing: list[str] = []
    p = target
    while p not in ("/", ""):
        if await sc.exists(p):
            break
        missing.append(p)
        p = posixpath.dirname(p)
    if missing:
        tmp = b.engine.images.scratch_path(".tar")
        try:
            with open(tmp, "wb") as f:
                f.write(_dir_tar(list(reversed(missing)), b.opts.epoch if b.opts.reproducible else _now()))
            await sc.put_tar(tmp)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    st.config = new
    cfg = b.image_config(st, {"created": b.now(), "created_by": created_by})
    if not missing:
        cfg["history"][-1]["empty_layer"] = True
        iid = await b.engine.images.commit_built(None, st.image_id, cfg)
    else:
        iid = await sc.commit(st.image_id, cfg, b.clamp)
    async for msg in b.finish_container(sc):
        yield msg
    async for msg in b.made(st, key, iid):
        yield msg


def _one_path(words: list[str]) -> str:
    if len(words) != 1 or not words[0]:
        raise InvalidParameter("WORKDIR requires exactly one argument")
    return words[0]


def _now() -> int:
    import time

    return int(time.time())
