"""Storage drivers: where layer directories live and how a container's rootfs is made.

A driver never mounts anything itself: ``rootfs_mount`` returns a ``Mount`` spec (or
``None`` when the directory is usable as is), and the layer store performs it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from typing import Protocol

from berth.fsutil import discard_tree, empty_trash
from berth.layers.mount import Mount
from berth.layers.tarapply import WhiteoutMode

# What every container sees before its own layer: mount points the runtime binds over, made in
# an "init" layer as Docker does, so they never show up in diff or commit.
INIT_FILES = ("etc/hostname", "etc/hosts", "etc/resolv.conf")
INIT_DIRS = ("dev", "dev/pts", "dev/shm", "proc", "sys", "etc")


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
    def rootfs_mount(self, cid: str, lower_cache_ids: list[str]) -> Mount | None: ...
    def rootfs_path(self, cid: str) -> str: ...
    def status(self) -> list[list[str]]: ...


class OverlayDriver:
    """Kernel overlayfs: image layers are read-only lowerdirs, each container gets an upper.

    Layout as Docker's overlay2: ``<id>/diff`` holds the layer, ``l/<short>`` links to it
    so classic mount options stay short.
    """

    name = "overlay"
    whiteouts: WhiteoutMode = "overlay"

    def __init__(self, root: str) -> None:
        self.root = root
        self.trash = os.path.join(root, ".trash")
        os.makedirs(os.path.join(root, "l"), exist_ok=True)
        empty_trash(self.trash)

    def _new_dir(self, key: str) -> str:
        d = os.path.join(self.root, key)
        os.makedirs(d, 0o710, exist_ok=True)  # as Docker's overlay2; diff below stays 0755: the layer's root
        os.mkdir(os.path.join(d, "diff"), 0o755)
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
        make_init_entries(self._new_dir(cid + "-init"))
        self._new_dir(cid)
        os.mkdir(os.path.join(self.root, cid, "work"), 0o700)
        os.mkdir(os.path.join(self.root, cid, "merged"), 0o755)

    def rw_path(self, cid: str) -> str:
        return os.path.join(self.root, cid, "diff")

    def init_path(self, cid: str) -> str | None:
        p = self.layer_path(cid + "-init")
        return p if os.path.isdir(p) else None

    def rootfs_path(self, cid: str) -> str:
        return os.path.join(self.root, cid, "merged")

    def _short(self, cache_id: str) -> str:
        with open(os.path.join(self.root, cache_id, "link")) as f:
            return os.path.join(self.root, "l", f.read().strip())

    def rootfs_mount(self, cid: str, lower_cache_ids: list[str]) -> Mount | None:
        if self.init_path(cid):
            lower_cache_ids = [cid + "-init", *lower_cache_ids]
        lowers = [self.layer_path(c) for c in lower_cache_ids] or [self._empty()]
        short = [self._short(c) for c in lower_cache_ids] or lowers
        # diffs and commits read the upper dir alone: keep overlay from redirecting or metacopying
        return Mount(type="overlay", lowers=lowers, short_lowers=short, cwd=self.root, upper=self.rw_path(cid),
                     work=os.path.join(self.root, cid, "work"),
                     options=["index=off", "redirect_dir=off", "metacopy=off"])

    def _empty(self) -> str:
        d = os.path.join(self.root, "empty")
        os.makedirs(d, exist_ok=True)
        return d

    def status(self) -> list[list[str]]:
        return [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]]


class VfsDriver:
    """Plain directory copies: every layer and container is a full copy of its parent."""

    name = "vfs"
    whiteouts: WhiteoutMode = "vfs"

    def __init__(self, root: str) -> None:
        self.root = os.path.join(root, "dir")
        self.trash = os.path.join(root, ".trash")
        os.makedirs(self.root, exist_ok=True)
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

    def rootfs_mount(self, cid: str, lower_cache_ids: list[str]) -> Mount | None:
        return None

    def status(self) -> list[list[str]]:
        return []


def overlay_supported() -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == "overlay" for line in f if line.strip())
    except OSError:
        return False


def make_driver(name: str, data_root: str) -> Driver:
    if name == "overlay":
        if not overlay_supported():
            raise RuntimeError("overlay storage driver: overlayfs is not available; use --storage-driver vfs")
        return OverlayDriver(os.path.join(data_root, "overlay"))
    if name == "vfs":
        return VfsDriver(os.path.join(data_root, "vfs"))
    raise RuntimeError(f"unknown storage driver {name!r} (overlay, vfs)")
