"""Network namespaces made by berthd itself, without a helper process.

A namespace is made in a short-lived thread: ``unshare(CLONE_NEWNET)`` moves only that thread into a
new namespace; the thread bind-mounts ``/proc/thread-self/ns/net`` onto a file (which keeps the
namespace alive after the thread leaves it), does whatever must be done inside (netlink sockets made
there belong to it), then goes back with ``setns``. The thread is never reused: if going back failed,
it ends with the namespace it was in rather than serving other work from the wrong one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MNT_DETACH = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]


def _check(r: int, what: str) -> None:
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread of its own and return its result (or raise its exception)."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["ok"] = fn()
        except BaseException as e:  # handed to the caller
            box["err"] = e

    t = threading.Thread(target=run, name="berth-netns", daemon=True)
    t.start()
    t.join()
    if "err" in box:
        raise box["err"]  # type: ignore[misc]
    return box["ok"]  # type: ignore[return-value]


def _switch(target_fd: int, body: Callable[[], T], make: str | None) -> T:
    """In the calling (dedicated) thread: enter ``target_fd``'s namespace (or a new one bound to
    ``make``), run ``body``, come back."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if make is not None:
            _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        else:
            _check(_libc.setns(target_fd, CLONE_NEWNET), "setns")
        try:
            if make is not None:
                _check(_libc.mount(b"/proc/thread-self/ns/net", make.encode(), None, _MS_BIND, None),
                       f"bind mount of the network namespace on {make}")
            return body()
        finally:
            # a thread that cannot go back must not live on: raise, and the thread ends
            _check(_libc.setns(own, CLONE_NEWNET), "setns back to berthd's namespace")
    finally:
        os.close(own)


def create(path: str, inside: Callable[[], T]) -> T:
    """Make a new network namespace kept alive by a bind mount on ``path`` (a new file), and run
    ``inside`` in it. Blocking. On failure nothing is left at ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o444)
    os.close(fd)
    try:
        return _in_thread(lambda: _switch(-1, inside, path))
    except BaseException:
        remove(path)
        raise


def run_in(path: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` inside the namespace bound at ``path``. Blocking."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _in_thread(lambda: _switch(fd, fn, None))
    finally:
        os.close(fd)


def move(src: str, dst: str) -> None:
    """Bind the namespace at ``src`` on ``dst`` (a new file) and take it away from ``src`` (a mount
    point cannot be renamed)."""
    fd = os.open(dst, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o444)
    os.close(fd)
    try:
        _check(_libc.mount(src.encode(), dst.encode(), None, _MS_BIND, None), f"bind mount of {src} on {dst}")
    except BaseException:
        os.unlink(dst)
        raise
    remove(src)


def remove(path: str) -> None:
    """Unbind and delete a namespace file; the kernel frees the namespace (and the veth ends in it)
    once nothing else holds it. A path that is not there is fine."""
    _libc.umount2(path.encode(), _MNT_DETACH)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def is_bound(path: str) -> bool:
    """True when ``path`` is a live namespace file (an nsfs bind mount), not a plain leftover file."""
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev
    except OSError:
        return False
