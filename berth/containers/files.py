"""Where a container's files live on the host (record directory, runtime bundle, writable layer),
and the blocking work on them, which the lifecycle runs in worker threads."""

from __future__ import annotations

import os

from berth.containers.config import log_driver
from berth.containers.mounts import unstage
from berth.containers.store import Container
from berth.fsutil import discard_tree, empty_trash, remove_tree
from berth.layers.store import LayerStore
from berth.runtime.interface import Bundle, Runtime


class ContainerFiles:
    def __init__(self, layers: LayerStore, runtime: Runtime, data_root: str, exec_root: str) -> None:
        self.layers = layers
        self.runtime = runtime
        self.dir = os.path.join(data_root, "containers")  # one directory per container: log, /etc files
        self.run_dir = os.path.join(exec_root, "c")  # runtime bundles
        self.trash = os.path.join(self.dir, ".trash")
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs(self.run_dir, exist_ok=True)
        empty_trash(self.trash)

    def bundle(self, c: Container) -> Bundle:
        hc = c.host_config
        return Bundle(id=c.id, dir=os.path.join(self.run_dir, c.id), name=c.name,
                      log="" if log_driver(hc) == "none" else c.log_path, oci=str(hc.get("Runtime") or ""))

    def staging_dir(self, c: Container) -> str:
        """Where a container's volume subpaths are bind-mounted for the runtime (daemon-only)."""
        return os.path.join(self.run_dir, c.id, "subpaths")

    def mount(self, c: Container) -> str:
        """The bundle directory made and the rootfs mounted (blocking)."""
        os.makedirs(self.bundle(c).dir, exist_ok=True)
        # a --rm container's writable layer is discarded after this run: no sync at its unmount
        return self.layers.mount_rw(c.id, volatile=bool(c.host_config.get("AutoRemove")))

    def unmount(self, c: Container) -> None:
        """A stopped container's subpath stages and rootfs unmounted (blocking)."""
        unstage(self.staging_dir(c))
        self.layers.unmount_rw(c.id)

    def discard(self, c: Container) -> None:
        """A removed container's files: writable layer, stages, bundle, directory (blocking; the
        rows are the caller's, deleted after this on the loop thread)."""
        self.layers.drop_rw(c.id)
        unstage(self.staging_dir(c))  # never let a tree removal reach into a mounted volume
        remove_tree(self.bundle(c).dir)
        discard_tree(os.path.join(self.dir, c.id), self.trash)
        self.runtime.clear_exit(self.bundle(c))
