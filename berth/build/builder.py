"""One build: the stages a target needs, run instruction by instruction, each step an image.

Every step yields Docker's classic output (``Step N/M : …``, `` ---> id``, ``Using cache``,
``Running in``) as it happens. A step's image comes from the cache when its key (berth.build.cache)
matches, else from the step: config-only instructions make an image with no new layer, RUN and
COPY/ADD commit their container's layer, WORKDIR only when it had to create the directory.
"""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from berth.build import config as cfgops
from berth.build import front
from berth.build.cache import BuildCache, step_key
from berth.build.engine import Engine, StepContainer
from berth.build.options import BUILDER_ARGS, PROXY_ARGS, BuildOptions
from berth.errors import BerthError, InvalidParameter
from berth.images.service import rfc3339
from berth.images.store import Image

JSON = dict[str, Any]
# An image config a build may write. Normal ones are kilobytes; each ENV/LABEL step stores the
# whole config (env and history included) again, so without a bound a 2 KB Dockerfile of
# ENV Bn=$A lines (A doubled to 4 MiB) made gigabytes of configs and JSON work in the event loop.
MAX_IMAGE_CONFIG = 16 << 20
_KEEP = ("architecture", "os", "os.version", "variant")  # base image fields a built image keeps


class StepFailed(BerthError):
    """A step failed; ``code`` is a RUN's exit status (Docker puts it in errorDetail)."""

    status = 400

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class StageState:
    image_id: str | None = None  # None: FROM scratch, nothing made yet
    config: JSON = field(default_factory=dict)  # the image config's "config" section
    base: JSON = field(default_factory=lambda: {"architecture": "amd64", "os": "linux"})
    history: list[JSON] = field(default_factory=list)
    author: str = ""
    cmd_set: bool = False
    args: dict[str, str | None] = field(default_factory=dict)  # ARGs declared in this stage

    def load(self, image_id: str, raw: JSON) -> None:
        self.image_id = image_id
        self.config = copy.deepcopy(raw.get("config") or {})
        self.base = {k: raw[k] for k in _KEEP if k in raw} or self.base
        self.history = list(raw.get("history") or [])
        self.author = raw.get("author", "")


def say(text: str) -> JSON:
    return {"stream": text}


class Build:
    def __init__(self, engine: Engine, cache: BuildCache, opts: BuildOptions, dockerfile: front.Dockerfile,
                 context: front.Context) -> None:
        self.engine = engine
        self.cache = cache
        self.opts = opts
        self.df = dockerfile
        self.context = context
        self.used_args: set[str] = set()
        self.stage_images: dict[int, str | None] = {}
        self.step = 0
        self.total = 0
        self.containers: list[StepContainer] = []  # made by this build: removed per rm/forcerm
        # whole seconds, as Go's RFC 3339 renders them (no fraction when it is zero)
        self.created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(opts.epoch)) if opts.reproducible else ""
        self.clamp = opts.epoch if opts.reproducible else None
        self.stages: list[int] = []
        self.final = ""
        self.stat_cache: Any = None  # berth.build.copysrc.StatCache, shared by the service's builds
        self.cache_from_ids: set[str] = set()
        self.cache_sources: list[Image] = []  # the cachefrom images themselves

    # -- helpers --------------------------------------------------------------------------------
    def now(self) -> str:
        return self.created or rfc3339(time.time())

    def meta_env(self) -> dict[str, str]:
        out = front.platform_args(self.opts.platform)
        for name, default in front.meta_args(self.df):
            value = self.opts.build_args.get(name, default)
            if name in self.opts.build_args:
                self.used_args.add(name)
            if value is not None:
                out[name] = value
        return out

    def args_in_effect(self, st: StageState) -> dict[str, str]:
        """Build args a RUN sees and the cache keys on: declared ARGs with a value, and proxy args."""
        out: dict[str, str] = {}
        for name, value in st.args.items():
            if value is not None:
                out[name] = value
        for name in PROXY_ARGS:
            v = self.opts.build_args.get(name)
            if v is not None:
                out[name] = v
                self.used_args.add(name)
        return out

    def sub_env(self, st: StageState) -> dict[str, str]:
        return {**self.args_in_effect(st), **cfgops.env_map(st.config)}

    def image_config(self, st: StageState, history: JSON) -> JSON:
        cfg: JSON = {**st.base, "config": copy.deepcopy(st.config), "created": history["created"],
                     "history": [*st.history, history]}
        if st.author:
            cfg["author"] = st.author
        import json

        size = len(json.dumps(cfg))
        if size > MAX_IMAGE_CONFIG:
            raise InvalidParameter(f"the image config would be {size} bytes, more than berth's limit of "
                                   f"{MAX_IMAGE_CONFIG} (ENV, LABEL and instruction text are stored in it)")
        return cfg

    def shell(self, st: StageState) -> list[str]:
        return list(st.config.get("Shell") or cfgops.DEFAULT_SHELL)

    # -- the build -----------------------------------------------------------------------------
    def plan(self) -> list[int]:
        """The stages the target needs and the step count (a bad target raises: an HTTP 400)."""
        self.stages = front.needed_stages(self.df, self.opts.target, self.opts.build_args)
        extra_labels = 1 if self.opts.labels else 0
        self.total = sum(len(front.instructions(self.df, i)) for i in self.stages) + extra_labels
        return self.stages

    async def run(self) -> AsyncIterator[JSON]:
        stages = self.stages
        final: str | None = None
        for n, index in enumerate(stages):
            st = StageState()
            insts = front.instructions(self.df, index)
            async for msg in self.from_(st, insts[0], index):
                yield msg
            for inst in insts[1:]:
                async for msg in self.instruction(st, inst):
                    yield msg
            if n == len(stages) - 1 and self.opts.labels:
                self.step += 1
                pairs = sorted(self.opts.labels.items())
                yield say(f"Step {self.step}/{self.total} : LABEL "
                          + " ".join(f"{k!s}={v!s}" for k, v in pairs) + "\n")
                async for msg in self.config_step(st, "LABEL", lambda c, p=pairs: cfgops.set_labels(c, p)):
                    yield msg
            if st.image_id is None:
                st.image_id = await self.scratch_image(st)
            self.stage_images[index] = st.image_id
            final = st.image_id
        assert final is not None
        self.final = final

    async def instruction(self, st: StageState, inst: front.Instruction, trigger: bool = False) -> AsyncIterator[JSON]:
        if not trigger:
            self.step += 1
            yield say(f"Step {self.step}/{self.total} : {inst.original}\n")
        from berth.build import steps

        async for msg in steps.dispatch(self, st, inst):
            yield msg

    async def from_(self, st: StageState, inst: front.Instruction, index: int) -> AsyncIterator[JSON]:
        self.step += 1
        yield say(f"Step {self.step}/{self.total} : {inst.original}\n")
        name = front.expand(inst.args[0], self.meta_env(), front.escape(self.df)) if inst.args else ""
        if not name:
            raise InvalidParameter("FROM requires either one or three arguments")
        stage_ix = front.stage_index(self.df, name, index)
        if stage_ix is not None and stage_ix in self.stage_images:
            iid = self.stage_images[stage_ix]
        elif name.lower() == "scratch":
            return
        else:
            iid = None
            async for msg in self.base_image(name):
                if "_image" in msg:
                    iid = msg["_image"]
                else:
                    yield msg
        assert iid is not None
        image = self.engine.images.get(iid)
        st.load(image.id, image.config)
        yield say(f" ---> {image.id.removeprefix('sha256:')[:12]}\n")
        triggers = list(st.config.get("OnBuild") or [])
        if triggers:
            st.config["OnBuild"] = None
            yield say(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
            for text in triggers:
                for trig in front.parse_trigger(text, front.escape(self.df)):
                    async for msg in self.instruction(st, trig, trigger=True):
                        yield msg

    async def base_image(self, name: str) -> AsyncIterator[JSON]:
        from berth.images import reference
        from berth.images.store import ImageNotFound

        try:
            ref = reference.parse(name)
        except BerthError as e:
            raise InvalidParameter(f"invalid reference format: {name}: {e}") from e
        if not self.opts.pull:
            try:
                yield {"_image": self.engine.images.get(name).id}
                return
            except ImageNotFound:
                pass
        creds = self.opts.registry_auth.get(ref.domain) or self.opts.registry_auth.get(
            "https://index.docker.io/v1/" if ref.domain == "docker.io" else ref.domain)
        from berth.distribution.client import Credentials

        async for item in self.engine.pulls.pull(ref.repo, ref.digest or ref.tag or "latest", creds or Credentials()):
            yield item
        yield {"_image": self.engine.images.get(str(ref) if not ref.digest else name).id}

    async def scratch_image(self, st: StageState) -> str:
        """An image with no layers and an empty config: the parent of a FROM scratch stage's first
        container (a container needs an image)."""
        cfg: JSON = {**st.base, "config": copy.deepcopy(st.config), "created": self.now(), "history": []}
        iid = await self.engine.images.commit_built(None, None, cfg)
        st.image_id = iid
        return iid

    # -- a step whose result is an image, from the cache or made -------------------------------------
    def key(self, st: StageState, text: str, checksum: str = "") -> str:
        return step_key(st.image_id or "scratch", text, self.args_in_effect(st), checksum, self.opts.platform,
                        self.opts.reproducible)

    async def cached(self, st: StageState, key: str, created_by: str = "",
                     config: JSON | None = None) -> AsyncIterator[JSON]:
        """Yields the Using-cache lines when the step hits (and moves ``st`` to that image): by its
        key in the cache table, else (with ``cachefrom``) in the history of a named image."""
        if self.opts.nocache:
            return
        iid = self.cache.get(key)
        if iid is None or not self.cache_source_allowed(iid):
            iid = await self.from_sources(st, created_by, config) if created_by and config is not None else None
            if iid is None:
                return
            self.cache.put(key, iid)
        image = self.engine.images.get(iid)
        args, cmd_set = st.args, st.cmd_set
        st.load(image.id, image.config)
        st.args, st.cmd_set = args, cmd_set
        yield say(" ---> Using cache\n")
        yield say(f" ---> {iid.removeprefix('sha256:')[:12]}\n")

    async def from_sources(self, st: StageState, created_by: str, config: JSON) -> str | None:
        """``cachefrom`` images pulled or loaded (no local parent chain): one whose history starts
        as this image's, on the same layers, and continues with this very step, gives the step's
        image: this step's config on that history entry and, unless the entry made no layer, on
        the source's next layer (already stored, as the source is)."""
        if not self.cache_sources:
            return None
        n = len(st.history)
        have = self.engine.images.get(st.image_id).diff_ids if st.image_id else []
        mine = [(h.get("created_by", ""), bool(h.get("empty_layer"))) for h in st.history]
        for src in self.cache_sources:
            hist = list(src.config.get("history") or [])
            if len(hist) <= n or hist[n].get("created_by") != created_by:
                continue
            if [(h.get("created_by", ""), bool(h.get("empty_layer"))) for h in hist[:n]] != mine:
                continue
            diffs = src.diff_ids
            if diffs[:len(have)] != have:
                continue
            entry = hist[n]
            reuse = None
            if not entry.get("empty_layer"):
                if len(diffs) <= len(have):
                    continue
                reuse = diffs[len(have)]
            cfg: JSON = {**st.base, "config": copy.deepcopy(config), "created": entry.get("created", self.now()),
                         "history": [*st.history, entry]}
            if st.author:
                cfg["author"] = st.author
            return await self.engine.images.commit_built(None, st.image_id, cfg, reuse_diff_id=reuse)
        return None

    def cache_source_allowed(self, iid: str) -> bool:
        """With ``cachefrom``, only those images and their ancestors serve as cache (as Docker)."""
        if not self.opts.cache_from:
            return True
        return iid in self.cache_from_ids

    async def made(self, st: StageState, key: str, iid: str) -> AsyncIterator[JSON]:
        self.cache.put(key, iid)
        image = self.engine.images.get(iid)
        args, cmd_set = st.args, st.cmd_set
        st.load(iid, image.config)
        st.args, st.cmd_set = args, cmd_set
        yield say(f" ---> {iid.removeprefix('sha256:')[:12]}\n")

    async def config_step(self, st: StageState, name: str, change: Any) -> AsyncIterator[JSON]:
        """A config-only instruction: a new image, no new layer (an ``empty_layer`` history entry)."""
        new = copy.deepcopy(st.config)
        comment = change(new)
        shell = self.shell(st)
        created_by = " ".join([*shell, "#(nop) ", comment])
        key = self.key(st, created_by)
        hit = False
        async for msg in self.cached(st, key, created_by, new):
            hit = True
            yield msg
        if hit:
            return
        st.config = new
        cfg = self.image_config(st, {"created": self.now(), "created_by": created_by, "empty_layer": True})
        iid = await self.engine.images.commit_built(None, st.image_id, cfg)
        async for msg in self.made(st, key, iid):
            yield msg

    async def new_container(self, st: StageState, cmd: list[str], body: JSON) -> StepContainer:
        if st.image_id is None:
            await self.scratch_image(st)
        assert st.image_id is not None
        sc = StepContainer(self.engine, st.image_id, cmd, body)
        self.containers.append(sc)
        await sc.create()
        return sc

    async def finish_container(self, sc: StepContainer) -> AsyncIterator[JSON]:
        if self.opts.rm or self.opts.forcerm:
            yield say(f"Removing intermediate container {sc.id[:12]}\n")
            await sc.remove()
            self.containers.remove(sc)

    async def cleanup(self, failed: bool) -> None:
        """Containers left by a failed step: removed with ``forcerm``, kept otherwise (as Docker);
        ``failed=False`` after a success or a client that went away: all removed (killed if running)."""
        if failed and not self.opts.forcerm:
            return
        for sc in list(self.containers):
            await sc.remove()
        self.containers.clear()

    def unconsumed_args(self) -> list[str]:
        return sorted(k for k in self.opts.build_args
                      if k not in self.used_args and k not in PROXY_ARGS and k not in BUILDER_ARGS)
