"""Storage drivers: where layer directories live, how a container's rootfs is made, and what
a container changed (as containerd's snapshotter and diff comparer together).

A driver never mounts anything itself: ``rootfs_mount`` returns a ``Mount`` spec (or
``None`` when the directory is usable as is), and the layer store performs it. ``changes``
and ``write_diff`` compare a container layer in whatever way the driver's layout calls for
(berth/layers/diff.py); nobody outside ``berth.layers`` asks which driver is in use.
"""

from __future__ import annotations

import array
import fcntl
import os
import secrets
import subprocess
from typing import Any, BinaryIO, Protocol

from berth.fsutil import atomic_write, discard_tree, empty_trash, remove_tree
from berth.layers import diff
from berth.layers.mount import Mount
from berth.layers.tarapply import WhiteoutMode
from berth.storecheck import ORPHAN, Leftover, ls, trash_contents

# What every container sees before its own layer: mount points the runtime binds over, made in
# an "init" layer as Docker does, so they never show up in diff or commit.
# Each driver's directories under the data root and their modes (Docker's overlay2 keeps 0710, group
# x being for a remapped root, which berth does not have; its short-link dir "l" 0700). berthd's
# host-permission gate sets them at every start without knowing what a driver is.
DRIVER_DIRS: dict[str, dict[str, int]] = {
    "overlay": {"overlay": 0o710, "overlay/l": 0o700},
    "vfs": {"vfs": 0o710, "vfs/dir": 0o710},
}

SHARED_INIT = "init-layer"  # the overlay driver's one init layer (not a hex id: no layer can be named so)
INIT_FILES = ("etc/hostname", "etc/hosts", "etc/resolv.conf")
INIT_DIRS = ("dev", "dev/pts", "dev/shm", "proc", "sys", "etc")
_INIT_PATHS = frozenset(INIT_FILES + INIT_DIRS)


_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_TOPDIR_FL = 0x00020000


def spread_children(path: str) -> None:
    """Mark ``path`` as a top of directory hierarchies (ext4's ``chattr +T``), so each layer or
    container directory made in it is placed in a block group of its own with free inodes (the
    Orlov allocator) instead of its parent's. Measured here: creating a file in a directory under
    a long-used parent cost 535-570 µs of kernel time, 15-20 µs below a +T parent. A hint only:
    filesystems without the flag are left as they are."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        if not flags[0] & _FS_TOPDIR_FL:
            flags[0] |= _FS_TOPDIR_FL
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags, True)
    except OSError:
        pass  # not ext2/3/4, or not ours to change
    finally:
        os.close(fd)


def make_init_entries(root: str) -> None:
    for d in INIT_DIRS:
        p = os.path.join(root, d)
        if not os.path.lexists(p):
            os.makedirs(p, mode=0o755)
    for f in INIT_FILES:
        p = os.path.join(root, f)
        if not os.path.lexists(p):
            os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))


class Driver(Protocol):
    name: str
    whiteouts: WhiteoutMode

    def new_layer(self, cache_id: str, parent_cache_id: str | None) -> str: ...
    def layer_path(self, cache_id: str) -> str: ...
    def remove(self, cache_id: str) -> None: ...
    def new_rw(self, cid: str, lower_cache_ids: list[str]) -> None: ...
    def rw_path(self, cid: str) -> str: ...
    def init_path(self, cid: str) -> str | None: ...
    def rootfs_mount(self, cid: str, lower_cache_ids: list[str], volatile: bool = False) -> Mount | None: ...
    def rootfs_path(self, cid: str) -> str: ...
    def status(self) -> list[list[str]]: ...
    def changes(self, cid: str, lower_cache_ids: list[str]) -> list[dict[str, Any]]: ...
    def write_diff(self, cid: str, lower_cache_ids: list[str], out: BinaryIO,
                   mtime_clamp: int | None = None) -> None: ...
    def graph_data(self, cache_ids: list[str]) -> dict[str, str]: ...
    def leftovers(self, known: set[str]) -> list[Leftover]: ...


class OverlayDriver:
    """Kernel overlayfs: image layers are read-only lowerdirs, each container gets an upper.

    Layout as Docker's overlay2: ``<id>/diff`` holds the layer, ``l/<short>`` links to it
    so classic mount options stay short.
    """

    name = "overlay"
    whiteouts: WhiteoutMode = "overlay"

    def __init__(self, root: str, tidy: bool = True) -> None:
        """``tidy=False``: only look (``berth check``), neither create nor empty anything."""
        self.root = root
        self.trash = os.path.join(root, ".trash")
        if tidy:
            os.makedirs(os.path.join(root, "l"), exist_ok=True)
            spread_children(root)
            empty_trash(self.trash)
            self._ensure_shared_init()

    def _ensure_shared_init(self) -> None:
        """The init layer (mount points and the /etc files the runtime binds over) is the same for
        every container, so one read-only copy serves them all: a per-container one cost ~15 file
        system operations at each create and each removal. Containers made before it keep theirs.
        Its ``link`` file is written last: without it, a crash's half-made layer is made afresh."""
        d = os.path.join(self.root, SHARED_INIT)
        if os.path.isfile(os.path.join(d, "link")):
            return
        remove_tree(d)
        os.makedirs(os.path.join(d, "diff"), 0o755)
        os.chmod(d, 0o710)
        make_init_entries(os.path.join(d, "diff"))
        short = secrets.token_hex(13).upper()
        os.symlink(f"../{SHARED_INIT}/diff", os.path.join(self.root, "l", short))
        atomic_write(os.path.join(d, "link"), short.encode())

    def _init_key(self, cid: str) -> str:
        """The init layer under this container: its own (made before the shared one) or the shared one."""
        own = cid + "-init"
        return own if os.path.isdir(os.path.join(self.root, own)) else SHARED_INIT

    def _new_dir(self, key: str, short_link: bool = True) -> str:
        """``short_link``: a layer gets a short name in ``l/`` for the mount options that list it as a
        lower; a container's writable layer is never a lower, and saves the two writes."""
        d = os.path.join(self.root, key)
        os.makedirs(d, 0o710, exist_ok=True)  # as Docker's overlay2; diff below stays 0755: the layer's root
        os.mkdir(os.path.join(d, "diff"), 0o755)
        if not short_link:
            return os.path.join(d, "diff")
        short = secrets.token_hex(13).upper()
        os.symlink(f"../{key}/diff", os.path.join(self.root, "l", short))
        with open(os.path.join(d, "link"), "w") as f:
            f.write(short)
        return os.path.join(d, "diff")

    def new_layer(self, cache_id: str, parent_cache_id: str | None) -> str:
        return self._new_dir(cache_id)

    def layer_path(self, cache_id: str) -> str:
        return os.path.join(self.root, cache_id, "diff")

    def remove(self, cache_id: str) -> None:
        d = os.path.join(self.root, cache_id)
        try:
            with open(os.path.join(d, "link")) as f:
                os.unlink(os.path.join(self.root, "l", f.read().strip()))
        except FileNotFoundError:
            pass
        discard_tree(d, self.trash)
        if not cache_id.endswith("-init") and os.path.isdir(os.path.join(self.root, cache_id + "-init")):
            self.remove(cache_id + "-init")

    def new_rw(self, cid: str, lower_cache_ids: list[str]) -> None:
        self._new_dir(cid, short_link=False)
        os.mkdir(os.path.join(self.root, cid, "work"), 0o700)
        os.mkdir(os.path.join(self.root, cid, "merged"), 0o755)

    def rw_path(self, cid: str) -> str:
        return os.path.join(self.root, cid, "diff")

    def init_path(self, cid: str) -> str | None:
        return self.layer_path(self._init_key(cid))

    def rootfs_path(self, cid: str) -> str:
        return os.path.join(self.root, cid, "merged")

    def _short(self, cache_id: str) -> str:
        with open(os.path.join(self.root, cache_id, "link")) as f:
            return os.path.join(self.root, "l", f.read().strip())

    def rootfs_mount(self, cid: str, lower_cache_ids: list[str], volatile: bool = False) -> Mount | None:
        """``volatile``: the writable layer is thrown away after one run (``--rm``), so overlay need
        not sync the upper filesystem at unmount, which costs a journal commit of the whole host
        filesystem (2-70 ms on a busy host). Overlay leaves a marker that refuses a later mount
        (its contents are unsafe after a host crash). A layer found with the marker was mounted
        volatile before and never kept past that run, as after a crash before its start was recorded:
        its upper and work directories may hold unsynced writes, so they are emptied, not reused."""
        work = os.path.join(self.root, cid, "work")
        if volatile and os.path.lexists(os.path.join(work, "work", "incompat", "volatile")):
            for d in (work, self.rw_path(cid)):
                remove_tree(d)
                os.mkdir(d, 0o700 if d == work else 0o755)
        lower_cache_ids = [self._init_key(cid), *lower_cache_ids]
        lowers = [self.layer_path(c) for c in lower_cache_ids]
        short = [self._short(c) for c in lower_cache_ids]
        # diffs and commits read the upper dir alone: keep overlay from redirecting or metacopying
        options = ["index=off", "redirect_dir=off", "metacopy=off"] + (["volatile"] if volatile else [])
        return Mount(type="overlay", lowers=lowers, short_lowers=short, cwd=self.root, upper=self.rw_path(cid),
                     work=work, options=options)

    def status(self) -> list[list[str]]:
        return [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]]

    def _lowers(self, cid: str, lower_cache_ids: list[str]) -> list[str]:
        init = self.init_path(cid)
        return ([init] if init else []) + [self.layer_path(c) for c in lower_cache_ids]

    def changes(self, cid: str, lower_cache_ids: list[str]) -> list[dict[str, Any]]:
        """The upper dir is the change set; the lowers (init layer first) tell added from modified."""
        return diff.changes_overlay(self.rw_path(cid), self._lowers(cid, lower_cache_ids))

    def write_diff(self, cid: str, lower_cache_ids: list[str], out: BinaryIO,
                   mtime_clamp: int | None = None) -> None:
        diff.write_layer_tar_overlay(self.rw_path(cid), self._lowers(cid, lower_cache_ids), out, mtime_clamp)

    def graph_data(self, cache_ids: list[str]) -> dict[str, str]:
        """An image's ``GraphDriver.Data``, as Docker's overlay2 shows it; ``cache_ids`` top first."""
        if not cache_ids:
            return {}
        paths = [self.layer_path(c) for c in cache_ids]
        data = {"UpperDir": paths[0], "WorkDir": os.path.join(os.path.dirname(paths[0]), "work")}
        if len(paths) > 1:
            data["LowerDir"] = ":".join(paths[1:])
        return data

    def leftovers(self, known: set[str]) -> list[Leftover]:
        return _unknown_dirs(self.root, known, ("l", "empty", ".trash", SHARED_INIT), self.trash)


class VfsDriver:
    """Plain directory copies: every layer and container is a full copy of its parent."""

    name = "vfs"
    whiteouts: WhiteoutMode = "vfs"

    def __init__(self, root: str, tidy: bool = True) -> None:
        self.root = os.path.join(root, "dir")
        self.trash = os.path.join(root, ".trash")
        if tidy:
            os.makedirs(self.root, exist_ok=True)
            spread_children(self.root)
            empty_trash(self.trash)

    def _copy(self, src: str | None, dst: str) -> None:
        if src is None:
            os.mkdir(dst, 0o755)
            return
        subprocess.run(["cp", "-a", "--reflink=auto", src, dst], check=True)

    def new_layer(self, cache_id: str, parent_cache_id: str | None) -> str:
        dst = self.layer_path(cache_id)
        self._copy(self.layer_path(parent_cache_id) if parent_cache_id else None, dst)
        return dst

    def layer_path(self, cache_id: str) -> str:
        return os.path.join(self.root, cache_id)

    def remove(self, cache_id: str) -> None:
        discard_tree(self.layer_path(cache_id), self.trash)

    def new_rw(self, cid: str, lower_cache_ids: list[str]) -> None:
        self._copy(self.layer_path(lower_cache_ids[0]) if lower_cache_ids else None, self.layer_path(cid))
        make_init_entries(self.layer_path(cid))  # no layering here: diffs leave these out by name

    def rw_path(self, cid: str) -> str:
        return self.layer_path(cid)

    def init_path(self, cid: str) -> str | None:
        return None

    def rootfs_path(self, cid: str) -> str:
        return self.layer_path(cid)

    def rootfs_mount(self, cid: str, lower_cache_ids: list[str], volatile: bool = False) -> Mount | None:
        return None

    def status(self) -> list[list[str]]:
        return []

    def _base(self, lower_cache_ids: list[str]) -> str:
        return self.layer_path(lower_cache_ids[0]) if lower_cache_ids else ""

    def changes(self, cid: str, lower_cache_ids: list[str]) -> list[dict[str, Any]]:
        """The container's copy compared with the image's top layer. The runtime's mount points,
        made in the copy itself (no init layer here), count as part of the image: neither diff nor
        commit shows them, as with overlay's init layer."""
        return diff.changes_vfs(self._base(lower_cache_ids), self.rw_path(cid), _INIT_PATHS)

    def write_diff(self, cid: str, lower_cache_ids: list[str], out: BinaryIO,
                   mtime_clamp: int | None = None) -> None:
        diff.write_layer_tar_vfs(self._base(lower_cache_ids), self.rw_path(cid), out, _INIT_PATHS, mtime_clamp)

    def graph_data(self, cache_ids: list[str]) -> dict[str, str]:
        return {"Dir": self.layer_path(cache_ids[0])} if cache_ids else {}

    def leftovers(self, known: set[str]) -> list[Leftover]:
        return _unknown_dirs(self.root, known, (), self.trash)


def _unknown_dirs(base: str, known: set[str], own: tuple[str, ...], trash: str) -> list[Leftover]:
    """Layer directories no layer or container names (``known``: cache IDs and container IDs), then
    what the trash still holds."""
    out = []
    for name in ls(base):
        if name in own or name in known or (name.endswith("-init") and name[:-5] in known):
            continue
        out.append(Leftover(os.path.join(base, name), ORPHAN, "layer directory of no layer or container", trash))
    return out + trash_contents(trash)


def overlay_supported() -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == "overlay" for line in f if line.strip())
    except OSError:
        return False


def existing(data_root: str) -> list[Driver]:
    """The drivers whose directories are in ``data_root``, made only to look (``berth check``)."""
    out: list[Driver] = []
    if os.path.isdir(os.path.join(data_root, "overlay")):
        out.append(OverlayDriver(os.path.join(data_root, "overlay"), tidy=False))
    if os.path.isdir(os.path.join(data_root, "vfs")):
        out.append(VfsDriver(os.path.join(data_root, "vfs"), tidy=False))
    return out


def for_check(data_root: str) -> Driver:
    """The driver whose directories hold ``data_root``'s layers, made only to look: overlay's when
    its directory is there, else vfs's."""
    return (existing(data_root) or [VfsDriver(os.path.join(data_root, "vfs"), tidy=False)])[0]


def make_driver(name: str, data_root: str) -> Driver:
    if name == "overlay":
        if not overlay_supported():
            raise RuntimeError("overlay storage driver: overlayfs is not available; use --storage-driver vfs")
        return OverlayDriver(os.path.join(data_root, "overlay"))
    if name == "vfs":
        return VfsDriver(os.path.join(data_root, "vfs"))
    raise RuntimeError(f"unknown storage driver {name!r} (overlay, vfs)")
