"""COPY and ADD: plan what is copied (berth.build.copysrc: sources resolved inside their root,
checksummed), probe the cache with the checksum, else extract the plan's tar into a created
container's root through the archive backend's safe path and commit the container's layer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import tempfile
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from berth import safepath
from berth.build import dockerfile as dfmod
from berth.build import fetch, front
from berth.errors import BerthError, InvalidParameter

if TYPE_CHECKING:
    from berth.build.builder import Build, StageState

JSON = dict[str, Any]


def say(text: str) -> JSON:
    return {"stream": text}


async def copy_step(b: Build, st: StageState, inst: front.Instruction, name: str) -> AsyncIterator[JSON]:
    from berth.build import copysrc

    env = b.sub_env(st)
    esc = front.escape(b.df)
    paths, inline, dest = dfmod.heredoc_sources(inst)
    sources = [front.expand(p, env, esc) for p in paths]
    dest = front.expand(dest, env, esc)
    chown = front.expand(inst.flags.get("chown", ""), env, esc)
    chmod = front.expand(inst.flags.get("chmod", ""), env, esc)
    src_ref = front.expand(inst.flags.get("from", ""), env, esc)
    files = [(hd.name, (front.expand(hd.content, env, esc) if hd.expand else hd.content).encode())
             for hd in inline]
    shell = b.shell(st)
    extract = None  # ADD unpacks local archives (copysrc's default)
    # the container whose root the plan looks at (dest dirs, --chown names) and, on a miss, takes the files
    sc = await b.new_container(st, [*shell, f"#(nop) {name}"], {})
    try:
        async with contextlib.AsyncExitStack() as stack:
            src_root = await stack.enter_async_context(source_root(b, src_ref)) if src_ref else b.context.root
            if name == "ADD" and any(fetch.is_url(p) for p in sources):
                if not all(fetch.is_url(p) for p in sources):
                    raise InvalidParameter("ADD mixing URLs and local files is not supported; use one ADD for each")
                src_root = stack.enter_context(tempfile.TemporaryDirectory(
                    dir=os.path.dirname(b.engine.images.scratch_path(""))))
                sources = await fetch.fetch(sources, src_root)
                chmod = chmod or "600"  # as Docker gives a downloaded file
                extract = False  # a downloaded archive is copied, not unpacked
            async with sc.rootfs() as rootfs:
                try:
                    plan = await asyncio.to_thread(
                        copysrc.plan_copy, src_root, sources, dest, workdir=st.config.get("WorkingDir") or "/",
                        rootfs=rootfs, chown=chown or None, chmod=chmod or None, add=name == "ADD",
                        stat_cache=b.stat_cache, from_stage=bool(src_ref), inline=files, extract=extract,
                        tmpdir=os.path.dirname(b.engine.images.scratch_path("")), cache_namespace="context")
                except copysrc.CopyError as e:
                    why = str(e)
                    raise InvalidParameter(why if why.startswith(name) else f"{name} failed: {why}") from None
            with plan:
                kind = _source_kind(src_root, sources, len(files))
                comment = f"{name} {kind}:{plan.checksum.removeprefix('sha256:')} in {dest} "
                created_by = " ".join([*shell, "#(nop) " + comment])  # one space, as Docker's COPY
                key = b.key(st, created_by + f" chown={chown} chmod={chmod} from={src_ref}", plan.checksum)
                hit = False
                async for msg in b.cached(st, key, created_by, st.config):
                    hit = True
                    yield msg
                if hit:
                    return
                tmp = b.engine.images.scratch_path(".tar")
                try:
                    with open(tmp, "wb") as f:
                        await asyncio.to_thread(plan.write_tar, f)
                    await sc.put_tar(tmp)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
        cfg = b.image_config(st, {"created": b.now(), "created_by": created_by})
        iid = await sc.commit(st.image_id, cfg, b.clamp)
    finally:
        await sc.remove()  # Docker's COPY makes no container: nothing of it is left either way
        if sc in b.containers:
            b.containers.remove(sc)
    async for msg in b.made(st, key, iid):
        yield msg


def _source_kind(src_root: str, sources: list[str], inline: int) -> str:
    """Docker's history word for what was copied: ``multi`` (several sources or wildcard
    patterns), ``dir`` or ``file``; looked up inside the source root, never following it out."""
    from berth.build import copysrc

    if len(sources) + inline != 1 or any(copysrc.has_wildcards(s) for s in sources):
        return "multi"  # a wildcard too, even one matching a single file (Docker says file: then)
    if not sources:
        return "file"  # one heredoc
    rel = sources[0].lstrip("/") or "."
    root = os.open(src_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = safepath.openat2(root, rel, safepath.O_PATH)
    except OSError:
        return "file"
    finally:
        os.close(root)
    try:
        return "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def image_root(b: Build, image_id: str | None) -> AsyncIterator[str | None]:
    """An image's filesystem as a host path (a created, never started container's root)."""
    if image_id is None:
        yield None
        return
    from berth.build.engine import StepContainer

    sc = StepContainer(b.engine, image_id, ["/bin/sh"], {})
    await sc.create()
    try:
        async with sc.rootfs() as root:
            yield root
    finally:
        await sc.remove()


@contextlib.asynccontextmanager
async def source_root(b: Build, ref: str) -> AsyncIterator[str]:
    """``COPY --from``: an earlier stage (by name or index) or an image (pulled when missing)."""
    current = b.stages[len(b.stage_images)] if len(b.stage_images) < len(b.stages) else -1
    stage = b.df.copy_from_stage(current, ref)
    if stage is not None:
        iid = b.stage_images.get(stage)
    else:
        iid = None
        try:
            async for msg in b.base_image(ref):
                if "_image" in msg:
                    iid = msg["_image"]
        except BerthError as e:
            raise InvalidParameter(f"COPY --from={ref}: {e}") from None
    if iid is None:
        raise InvalidParameter(f"COPY --from={ref}: no such stage or image")
    async with image_root(b, iid) as root:
        assert root is not None
        yield root
