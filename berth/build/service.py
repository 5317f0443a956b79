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


SMALL_CONTEXT = 64 << 20
_SHM = "/dev/shm"


def _shm_prefix(scratch_path: Callable[[str], str]) -> str:
    """tmpfs context dirs are named after the data root, so start-up can clear this daemon's
    leftovers (it holds the data root's lock) without touching another daemon's."""
    import hashlib

    return "berth-build-" + hashlib.sha256(os.path.dirname(scratch_path("")).encode()).hexdigest()[:12] + "-"


def _clear_leftovers(prefix: str) -> None:
    try:
        names = os.listdir(_SHM)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix):
            shutil.rmtree(os.path.join(_SHM, name), ignore_errors=True)


def _context_dir(context_tar: str, on_disk: str, prefix: str) -> str:
    """Where the context is unpacked: a plain tar of up to 64 MiB (what the docker CLI sends for
    most projects) goes to tmpfs, whose file creation costs microseconds where this data root's
    costs about a millisecond a file; its unpacked size is bounded by the tar's own. Compressed
    or larger contexts go to the data root's scratch space, so a big one never costs its size in RAM."""
    try:
        small = os.path.getsize(context_tar) <= SMALL_CONTEXT and _plain_tar(context_tar)
        if small and os.path.isdir(_SHM):
            import tempfile

            return tempfile.mkdtemp(prefix=prefix, dir=_SHM)
    except OSError:
        pass
    os.mkdir(on_disk, 0o700)
    return on_disk


def _plain_tar(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(512)
    return len(head) == 512 and head[257:262] == b"ustar"


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
        self._cleanups: set[asyncio.Future[None]] = set()
        self._shm_prefix = _shm_prefix(scratch_path)
        _clear_leftovers(self._shm_prefix)  # a crash's unpacked contexts

    async def close(self) -> None:
        """Daemon shutdown: finish removing unpacked contexts (tmpfs ones would outlive the data root)."""
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)

    def _discard(self, workdir: str) -> None:
        task = asyncio.ensure_future(asyncio.to_thread(shutil.rmtree, workdir, True))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

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

        workdir = _context_dir(context_tar, self.scratch_path(".ctx"), self._shm_prefix)
        try:
            ctx = await asyncio.to_thread(BuildContext.from_tar, context_tar, workdir)
        except ContextError as e:
            self._discard(workdir)
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
            b.cache_sources = [self.engine.images.get(i) for i in opts.cache_from if self._exists(i)]
            front_checked = b.plan()  # the target and the step count: a bad target is a 400
            del front_checked
            async for msg in self._run(b, refs):
                yield msg
        finally:
            self._discard(workdir)  # after the answer: the client need not wait for the unlinks

    def _exists(self, name: str) -> bool:
        try:
            self.engine.images.get(name)
            return True
        except BerthError:
            return False

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
        gone = False  # the client went away: nobody waits for a half-done build's containers
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
        except (GeneratorExit, asyncio.CancelledError):
            gone = True
            raise
        finally:
            await b.cleanup(failed and not gone)
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
