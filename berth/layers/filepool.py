"""A few threads that run jobs for the tar extractor: creating a layer's regular files.

On this kind of host, creating a file is almost all kernel time (ext4 inode allocation, ~0.5 ms
under load), the GIL is released for it, and creations in different directories run in parallel
(creations in one directory serialize on its inode lock). So jobs carry a key (their directory)
and one key's jobs go to one thread, in order, while the next directory's go to the next thread.

The extractor decides what may run out of order (see ``tarextract``); this module only runs jobs,
bounds how many wait, and hands back the first failure.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

Job = tuple[Callable[..., Any], tuple[Any, ...]]


class AffinityPool:
    """``threads`` workers; ``submit`` blocks while ``max_pending`` jobs wait or run."""

    def __init__(self, threads: int, max_pending: int = 256) -> None:
        self._queues: list[queue.SimpleQueue[Job | None]] = [queue.SimpleQueue() for _ in range(threads)]
        self._cond = threading.Condition()
        self._slots = threading.BoundedSemaphore(max_pending)
        self.pending = 0
        self.error: BaseException | None = None
        self._key: object = None
        self._next = 0
        self._threads = [threading.Thread(target=self._run, args=(q,), name="berth-extract", daemon=True)
                         for q in self._queues]
        for t in self._threads:
            t.start()

    def submit(self, key: object, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the thread of ``key`` (a new key takes the next thread). Raises
        the first failure of an earlier job instead, so a broken extraction stops early."""
        if self.error is not None:
            raise self.error
        if key != self._key:
            self._key = key
            self._next = (self._next + 1) % len(self._queues)
        self._slots.acquire()
        with self._cond:
            self.pending += 1
        self._queues[self._next].put((fn, args))

    def _run(self, q: queue.SimpleQueue[Job | None]) -> None:
        while True:
            job = q.get()
            if job is None:
                return
            fn, args = job
            try:
                if self.error is None:  # after a failure the rest is skipped, not run
                    fn(*args)
            except BaseException as e:  # handed to the extractor's thread by drain()
                with self._cond:
                    if self.error is None:
                        self.error = e
            finally:
                self._slots.release()
                with self._cond:
                    self.pending -= 1
                    if not self.pending:
                        self._cond.notify_all()

    def drain(self) -> None:
        """Wait until every submitted job has finished; raise the first failure, if any."""
        with self._cond:
            while self.pending:
                self._cond.wait()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Wait for the jobs (never raises: the caller is already handling the outcome), then
        stop the threads."""
        with self._cond:
            while self.pending:
                self._cond.wait()
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join()
