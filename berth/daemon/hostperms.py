"""Who on the host may look into berthd's state: root, and nobody else (the CVE-2021-41091 class).

The mechanism, as dockerd has it:

- berthd fixes its umask at 022 first thing, so the modes it asks for are the modes it gets whatever
  shell or unit started it (an inherited 000 would make new state world-writable). The umask is not
  the confidentiality boundary: files berthd writes for containers (layer content, the init layer,
  ``/etc/hosts``, a created WORKDIR, volume ``_data``) must stay readable by a container's non-root
  USER, and crun and conmon inherit the umask too, so a 077 or 027 umask would break containers.
- The boundary is a few gate directories with exact modes, owned root:root, created so and re-set on
  every start (an older or hand-loosened root gets tightened): the data root 0710, the exec root
  0700, and below the data root the modes Docker uses for the same trees. Nothing below a gate is
  reachable by another host user, whatever its own mode: no path walk gets through the gate.
- Files that hold secrets (``berth.db`` with registry credentials and container environments, and
  SQLite's ``-wal``/``-shm`` beside it) are 0600 in their own right.

Containers are unaffected: crun and conmon run as root, the runtime mounts the rootfs and bind
sources before it drops to the container's user, and inside the container no host path is walked.
"""

from __future__ import annotations

import logging
import os
import stat

from berth.layers.drivers import DRIVER_DIRS

log = logging.getLogger("berthd")

UMASK = 0o022
DATA_ROOT_MODE = 0o710  # group is root: with no user-namespace remapping, 0710 shuts out every other user
EXEC_ROOT_MODE = 0o700  # bundles hold config.json with the container's environment
# Gate directories below the data root, with Docker's modes for the same trees.
DATA_DIRS: dict[str, int] = {
    "containers": 0o710,
    "content": 0o700,  # blobs: image configs, compressed layers
    "layers": 0o700,
    "image": 0o700,  # older data roots' blob directories (moved into content/): tightened if still there
    "distribution": 0o700,
    "volumes": 0o701,  # as Docker's local volume driver; unreachable anyway through the data root
    "tmp": 0o700,
    **{rel: mode for dirs in DRIVER_DIRS.values() for rel, mode in dirs.items()},  # the storage drivers' own
}
LEGACY_DIRS = frozenset({"image", "distribution"})
SECRET_FILES: dict[str, int] = {
    "berth.db": 0o600, "berth.db-wal": 0o600, "berth.db-shm": 0o600, "berthd.lock": 0o600,
}


def set_umask() -> int:
    """Fix the process umask (as dockerd does); returns the inherited one."""
    return os.umask(UMASK)


def secure_dir(path: str, mode: int, create: bool = True) -> bool:
    """Make ``path`` a root:root directory of exactly ``mode``; True if it exists afterwards."""
    if create:
        parent = os.path.dirname(path.rstrip("/"))
        if parent:
            os.makedirs(parent, exist_ok=True)
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            pass
    try:
        st = os.stat(path)  # follows a symlinked root, as the daemon will
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"{path} exists and is not a directory")
    _own_and_mode(path, st, mode)
    return True


def secure_file(path: str, mode: int) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode):
        _own_and_mode(path, st, mode)


def _own_and_mode(path: str, st: os.stat_result, mode: int) -> None:
    if (st.st_uid, st.st_gid) != (0, 0):
        os.chown(path, 0, 0)
        log.warning("%s was owned by %d:%d; now root:root", path, st.st_uid, st.st_gid)
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
        if stat.S_IMODE(st.st_mode) & ~mode:
            log.warning("tightened %s from %04o to %04o", path, stat.S_IMODE(st.st_mode), mode)


def secure_layout(data_root: str, exec_root: str, driver: str) -> None:
    """Create, or re-set on an existing root, every gate: run at each start, before the stores open."""
    secure_dir(data_root, DATA_ROOT_MODE)
    wanted = set(DRIVER_DIRS.get(driver, ()))
    other = {d for dirs in DRIVER_DIRS.values() for d in dirs} - wanted
    for rel, mode in DATA_DIRS.items():
        secure_dir(os.path.join(data_root, rel), mode, create=rel not in other and rel not in LEGACY_DIRS)
    for name, mode in SECRET_FILES.items():
        secure_file(os.path.join(data_root, name), mode)
    secure_dir(exec_root, EXEC_ROOT_MODE)
