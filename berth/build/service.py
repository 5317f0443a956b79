"""The build backend: a context tar and BuildOptions in, Docker's classic build stream out.

Everything a client can get wrong before any work (tags, the context, the Dockerfile, the
target) is checked before the first message, so it is an HTTP 400; what fails later is an
``errorDetail`` message after the step that failed. An image is tagged only when the whole
build succeeded; intermediate containers go per ``rm``/``forcerm``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import AsyncIterator, Callable
from typing import Any

from berth.build import dockerfile as dfmod
from berth.build.builder import Build, StepFailed
from berth.build.cache import BuildCache
from berth.build.engine import Engine
from berth.build.options import BuildOptions
from berth.errors import BerthError, InvalidParameter
from berth.images import reference
from berth.images.store import Image

log = logging.getLogger("berth.build")
JSON = dict[str, Any]
MAX_DOCKERFILE = 4 << 20


def _stat_cache() -> Any:
    """File hashes for this build only. Not kept across builds: an uploaded context is unpacked
    afresh each time with the client's mtimes, and a freed inode is soon reused, so (path, size,
    mtime, inode, mode) of a file could match a different content's entry from an earlier build."""
    from berth.build import copysrc

    return copysrc.StatCache()


def _error(msg: str, code: int | None = None) -> JSON:
    detail: JSON = {"message": msg}
    if code is not None:
        detail = {"code": code, "message": msg}
    return {"errorDetail": detail, "error": msg}


class BuildService:
    def __init__(self, engine: Engine, cache: BuildCache, scratch_path: Callable[[str], str]) -> None:
        self.engine = engine
        self.cache = cache
        self.scratch_path = scratch_path

    def _check(self, opts: BuildOptions) -> list[reference.Reference]:
        if opts.platform and opts.platform.split("/")[:2] != ["linux", "amd64"]:
            raise InvalidParameter(f"platform {opts.platform!r} is not supported: this engine builds linux/amd64")
        if opts.network_mode not in ("default", "none", "host", "bridge") and not opts.network_mode.startswith(
                "container:"):
            raise InvalidParameter(f"network mode {opts.network_mode!r} is not supported for RUN steps")
        refs = []
        for t in opts.tags:
            try:
                refs.append(reference.parse(t))
            except BerthError as e:
                raise InvalidParameter(f"invalid reference format: {t}: {e}") from None
        return refs

    async def build(self, context_tar: str, opts: BuildOptions) -> AsyncIterator[JSON]:
        refs = self._check(opts)
        from berth.build.context import BuildContext, ContextError

        workdir = self.scratch_path(".ctx")
        os.mkdir(workdir, 0o700)
        try:
            ctx = await asyncio.to_thread(BuildContext.from_tar, context_tar, workdir)
        except ContextError as e:
            shutil.rmtree(workdir, ignore_errors=True)
            raise InvalidParameter(str(e)) from None
        try:
            try:
                text = await asyncio.to_thread(ctx.dockerfile, opts.dockerfile)
                df = dfmod.parse_named(text, opts.dockerfile)
                await asyncio.to_thread(ctx.apply_dockerignore)
            except (ContextError, dfmod.DockerfileError) as e:
                raise InvalidParameter(str(e)) from None
            b = Build(self.engine, self.cache, opts, df, ctx)
            b.stat_cache = _stat_cache()
            b.cache_from_ids = self._cache_from(opts.cache_from)
            front_checked = b.plan()  # the target and the step count: a bad target is a 400
            del front_checked
            async for msg in self._run(b, refs):
                yield msg
        finally:
            await asyncio.to_thread(ctx.close)
            shutil.rmtree(workdir, ignore_errors=True)

    def _cache_from(self, names: list[str]) -> set[str]:
        """The images ``--cache-from`` names, and every image below them."""
        out: set[str] = set()
        for name in names:
            try:
                image = self.engine.images.get(name)
            except BerthError:
                continue  # Docker ignores a cache source it cannot find
            current: Image | None = image
            while current is not None and current.id not in out:
                out.add(current.id)
                try:
                    current = self.engine.images.get(current.parent) if current.parent else None
                except BerthError:
                    current = None
        return out

    async def _run(self, b: Build, refs: list[reference.Reference]) -> AsyncIterator[JSON]:
        quiet = b.opts.quiet
        failed = True
        try:
            for warning in b.df.warnings:
                if not quiet:
                    yield {"stream": warning + "\n"}
            try:
                async for msg in b.run():
                    if quiet and "stream" in msg:
                        continue
                    yield msg
                failed = False
            except StepFailed as e:
                yield _error(e.message, e.code)
                return
            except BerthError as e:
                yield _error(e.message)
                return
        finally:
            await b.cleanup(failed)
        iid = b.final
        unused = b.unconsumed_args()
        if unused and not quiet:
            yield {"stream": f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n"}
        yield {"aux": {"ID": iid}}
        if not quiet:
            yield {"stream": f"Successfully built {iid.removeprefix('sha256:')[:12]}\n"}
        for ref in refs:
            await self.engine.images.tag(iid, ref.repo, ref.tag or "latest")
            if not quiet:
                yield {"stream": f"Successfully tagged {reference.familiar(ref.repo)}:{ref.tag or 'latest'}\n"}
        if quiet:
            yield {"stream": iid + "\n"}
