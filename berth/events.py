"""The daemon's event bus behind ``GET /events``, in Docker's EventMessage shape.

Services ``publish`` as things happen; each ``/events`` request holds a subscription that first
replays matching history (``since``) and then streams live events until ``until``. Every subscriber
has its own queue, so a slow client never holds up the publisher: when its queue is full, events
are dropped for that client only (Docker drops them the same way).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

from berth.filters import Filters

log = logging.getLogger("berth.events")

HISTORY = 1000
QUEUE_SIZE = 1024

# The filter keys Docker accepts for /events ("action" is a Berth alias of "event").
_NAME_KEYS = ("container", "volume", "network", "daemon", "plugin", "node", "service", "secret", "config")
_KEYS = frozenset({"type", "event", "action", "image", "label", "scope", *_NAME_KEYS})
# Actions Docker emits with a ": detail" suffix; a filter on the bare name matches them all.
_SUFFIXED = ("exec_create", "exec_start", "exec_die", "health_status")

Event = dict[str, Any]


def _strip_tag(ref: str) -> str:
    """The familiar repository name of an image reference: no digest, no tag, no docker.io/library/."""
    ref = ref.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:  # a colon before the last slash is a registry port, not a tag
        ref = ref[:colon]
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
            break
    return ref


def compile_filters(filters: dict[str, list[str]] | None) -> Callable[[Event], bool]:
    """A predicate for Docker's /events filters: values of one key are ORed, different keys ANDed."""
    f = Filters.of(filters).validate(_KEYS)
    filters = {k: v for k, v in f.items() if v}
    types = set(filters.get("type", []))
    scopes = set(filters.get("scope", []))
    actions = set(filters.get("event", [])) | set(filters.get("action", []))
    images = set(filters.get("image", []))
    names = {k: filters[k] for k in _NAME_KEYS if k in filters}

    def match(ev: Event) -> bool:
        actor = ev.get("Actor") or {}
        aid: str = actor.get("ID", "")
        attrs: dict[str, str] = actor.get("Attributes") or {}
        if types and ev.get("Type") not in types:
            return False
        if scopes and ev.get("scope") not in scopes:
            return False
        if actions:
            action: str = ev.get("Action", "")
            # "exec_start: sh -c x" matches a filter on "exec_start" as well as the full action.
            if action not in actions and action.split(":", 1)[0] not in actions:
                return False
        # As in Docker, a name filter applies to every event: ID or "name" attribute by prefix.
        name = attrs.get("name", "")
        for values in names.values():
            if not any(aid.startswith(v) or (name and name.startswith(v)) for v in values):
                return False
        if images:
            # Containers carry their image in "image"; image events are about the actor (and "name").
            cands = {attrs.get("image", "")}
            if ev.get("Type") == "image":
                cands |= {aid, name}
            cands.discard("")
            if not any(c in images or _strip_tag(c) in images for c in cands):
                return False
        return f.match_kv("label", attrs)

    return match


class Subscription(AsyncIterator[Event]):
    """An async iterator over one subscriber's events; ``aclose`` (or dropping it) unsubscribes."""

    def __init__(self, bus: EventBus, backlog: list[Event], match: Callable[[Event], bool],
                 since_ns: int | None, until_ns: int | None) -> None:
        self._bus = bus
        self._backlog = collections.deque(backlog)
        self.match = match
        self._since_ns = since_ns
        self._until_ns = until_ns
        self.loop: asyncio.AbstractEventLoop | None
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None
        self.queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0
        # until already passed: history is all there will be.
        self._live = until_ns is None or until_ns > time.time_ns()
        self._closed = False

    def __aiter__(self) -> Subscription:
        return self

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        if self._backlog:
            return self._backlog.popleft()
        while self._live:
            timeout = None
            if self._until_ns is not None:
                timeout = (self._until_ns - time.time_ns()) / 1e9
                if timeout <= 0:
                    break
            try:
                ev = await asyncio.wait_for(self.queue.get(), timeout)
            except TimeoutError:
                break
            if self._until_ns is not None and ev["timeNano"] > self._until_ns:
                break
            # A "since" in the future also holds back live events until then.
            if self._since_ns is not None and ev["timeNano"] < self._since_ns:
                continue
            return ev
        await self.aclose()
        raise StopAsyncIteration

    def deliver(self, ev: Event) -> None:
        """Called by the publisher; never blocks."""
        try:
            self.queue.put_nowait(ev)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("events subscriber is not keeping up; %d event(s) dropped", self.dropped)

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._bus._unsubscribe(self)


class EventBus:
    def __init__(self, history: int = HISTORY) -> None:
        self._history: collections.deque[Event] = collections.deque(maxlen=history)
        # Weak: a subscription its consumer dropped without aclose (e.g. after ``break``) just goes away.
        self._subs: weakref.WeakSet[Subscription] = weakref.WeakSet()
        # publish may come from a worker thread; the lock keeps history and subscribers consistent.
        self._lock = threading.Lock()

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, type_: str, action: str, actor_id: str, attributes: dict[str, str]) -> None:
        now = time.time_ns()
        attrs = {k: str(v) for k, v in (attributes or {}).items()}
        ev: Event = {"Type": type_, "Action": action, "Actor": {"ID": actor_id, "Attributes": attrs},
                     "scope": "local", "time": now // 1_000_000_000, "timeNano": now}
        # The pre-1.22 fields Docker still fills: status/id for containers and images, from for containers.
        if type_ in ("container", "image"):
            ev["status"] = action
            ev["id"] = actor_id
            if type_ == "container":
                ev["from"] = attrs.get("image", "")
        with self._lock:
            self._history.append(ev)
            subs = [s for s in self._subs if s.match(ev)]
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for s in subs:
            if s.loop is None or s.loop is running:
                s.deliver(ev)
            else:
                # asyncio.Queue is not thread-safe: hand over to the subscriber's loop.
                try:
                    s.loop.call_soon_threadsafe(s.deliver, ev)
                except RuntimeError:  # that loop is closed; its subscriber is gone
                    pass

    def subscribe(self, since: float | None, until: float | None,
                  filters: dict[str, list[str]]) -> Subscription:
        """Matching history with time >= since, then live events until ``until`` (seconds since the epoch).

        Filters are validated here, before the caller starts its response. As in Docker, history is
        replayed only when ``since`` or ``until`` is given. Close the iterator (``aclose``) to unsubscribe.
        """
        match = compile_filters(filters)
        since_ns = None if since is None else int(since * 1_000_000_000)
        until_ns = None if until is None else int(until * 1_000_000_000)
        with self._lock:
            backlog: list[Event] = []
            if since_ns is not None or until_ns is not None:
                lo = since_ns or 0
                backlog = [e for e in self._history
                           if e["timeNano"] >= lo and (until_ns is None or e["timeNano"] <= until_ns) and match(e)]
            sub = Subscription(self, backlog, match, since_ns, until_ns)
            # Registered in the same step as the history snapshot: nothing published in between is lost.
            self._subs.add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)
