"""The filesystem of a created or stopped container with its volumes and binds, for ``docker cp``.

A running container's view is ``/proc/<pid>/root``: its own mount namespace has the volumes in
place. A stopped one has no such namespace, so one is made for the request: a short-lived helper
process (``main`` below) unshares a private mount namespace, bind-mounts each volume and bind onto
the container's rootfs there, chroots into it and waits; berthd then works on
``/proc/<helper>/root`` exactly as on a running container's root, and ends the helper when the
copy is done, which takes the namespace and every mount in it away. Nothing is ever mounted in the
host's namespace, and nothing is left behind if berthd or the helper dies.

Chosen over resolving paths against the mount list in berthd (the longest destination prefix
wins): the kernel then does the whole walk, symlinks from the rootfs into a volume and back, nested
mounts inside a copied directory, ``..`` across a mount point, with the same ``RESOLVE_IN_ROOT``
code the running case uses, instead of a second resolver that must agree with it. A process, not
``unshare(CLONE_NEWNS)`` in a pool thread: the namespace would stay with a thread the pool reuses.

Safety: every mount point is resolved inside the rootfs by descriptor (``openat2`` with
``RESOLVE_IN_ROOT``), missing ones created there as the runtime would at start; a subpath is opened
inside its volume the same way; mounts are made by descriptor (``/proc/self/fd/N``), so a symlink
placed by the container or in a volume can only lead to somewhere inside the container's tree.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import posixpath
import stat
import sys
from collections.abc import AsyncIterator
from typing import Any

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18


def _libc() -> Any:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount_point(root_fd: int, dest: str, is_dir: bool) -> int:
    """An ``O_PATH`` fd on ``dest`` inside the rootfs, made (directory or empty file) if missing."""
    from berth import safepath

    try:
        return safepath.open_in_root(root_fd, dest, safepath.O_PATH)
    except FileNotFoundError:
        pass
    parent_fd = safepath.mkdirs_in_root(root_fd, posixpath.dirname(safepath.clean_rel(dest)))
    try:
        name = posixpath.basename(safepath.clean_rel(dest))
        try:
            if is_dir:
                os.mkdir(name, 0o755, dir_fd=parent_fd)
            else:
                os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                                 dir_fd=parent_fd))
        except FileExistsError:
            pass
    finally:
        os.close(parent_fd)
    return safepath.open_in_root(root_fd, dest, safepath.O_PATH)


def _bind(libc: Any, root_fd: int, m: dict[str, Any]) -> None:
    from berth import safepath

    src_fd = os.open(m["source"], safepath.O_PATH | os.O_CLOEXEC)  # berthd's volume dir, or the user's bind source
    try:
        if m.get("subpath"):  # inside the volume, whatever links it holds
            sub_fd = safepath.open_in_root(src_fd, m["subpath"], safepath.O_PATH)
            os.close(src_fd)
            src_fd = sub_fd
        is_dir = stat.S_ISDIR(os.fstat(src_fd).st_mode)
        target_fd = _mount_point(root_fd, m["destination"], is_dir)
        try:
            _check(libc.mount(f"/proc/self/fd/{src_fd}".encode(), f"/proc/self/fd/{target_fd}".encode(), None,
                              MS_BIND | MS_REC, None), f"bind {m['destination']}")
        finally:
            os.close(target_fd)
    finally:
        os.close(src_fd)
    if not m.get("rw", True):
        top = safepath.open_in_root(root_fd, m["destination"], safepath.O_PATH)  # the mount just made
        try:
            _check(libc.mount(None, f"/proc/self/fd/{top}".encode(), None, MS_BIND | MS_REMOUNT | MS_RDONLY, None),
                   f"read-only {m['destination']}")
        finally:
            os.close(top)


@contextlib.asynccontextmanager
async def assembled(rootfs: str, mounts: list[dict[str, Any]]) -> AsyncIterator[str]:
    """A host path showing ``rootfs`` with ``mounts`` in place, for as long as the context lasts."""
    import asyncio

    import berth
    from berth.errors import BerthError

    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(berth.__file__)))
    code = f"import sys; sys.path.insert(0, {package_dir!r}); from berth.containers.cpview import main; main()"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, rootfs, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps(mounts).encode() + b"\n")
        await proc.stdin.drain()
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode(errors="replace").strip()
        if line != "ready":
            raise BerthError(f"cannot assemble the container's volumes: {line.removeprefix('error: ') or 'no answer'}")
        yield f"/proc/{proc.pid}/root"
    finally:
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def main() -> None:
    """``<python> -c ... ROOTFS``; stdin: one JSON line, the mounts (source, destination, rw,
    subpath); answers "ready" (or "error: ...") on stdout, then waits for stdin to close."""
    rootfs = sys.argv[1]
    mounts = json.loads(sys.stdin.readline())
    libc = _libc()
    try:
        _check(libc.unshare(CLONE_NEWNS), "unshare")
        # nothing done here may propagate back to the host's mount table
        _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
        root_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        # parents before children, so /data/sub lands inside the volume mounted at /data
        for m in sorted(mounts, key=lambda m: len([p for p in m["destination"].split("/") if p])):
            _bind(libc, root_fd, m)
        os.fchdir(root_fd)
        os.chroot(".")
    except OSError as e:
        sys.stdout.write(f"error: {e.strerror or e}\n")
        sys.stdout.flush()
        return
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.read()


if __name__ == "__main__":
    main()
