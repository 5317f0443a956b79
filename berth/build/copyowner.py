"""COPY --chown / --chmod: ids resolved in the target rootfs's passwd and group, read by fd."""

from __future__ import annotations

import errno
import os
import re
import stat

from berth import safepath
from berth.build.copyplan import CopyError

MAX_PASSWD = 4 * 1024 * 1024



def _read_rootfs_file(rootfs: str, rel: str) -> str:
    """A small file of the target rootfs, symlinks resolved inside it; OSError names "/rel"."""
    root_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd = safepath.openat2(root_fd, rel, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            raise OSError(e.errno, (e.strerror or "").lower(), "/" + rel) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", "/" + rel)
            data = os.read(fd, MAX_PASSWD)
        finally:
            os.close(fd)
    finally:
        os.close(root_fd)
    return data.decode("utf-8", "replace")


def _lookup(spec: str, rootfs: str, rel: str, kind: str) -> int:
    what = "uid for user" if kind == "user" else "gid for group"
    prefix = f"unable to convert uid/gid chown string to host mapping: can't find {what} {spec}"
    if spec.isdigit():
        return int(spec)
    try:
        text = _read_rootfs_file(rootfs, rel)
    except OSError as e:
        raise CopyError(f"{prefix}: open {e.filename}: {e.strerror}") from None
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[0] == spec:
            try:
                return int(parts[2])
            except ValueError:
                continue
    raise CopyError(f"{prefix}: no such {kind}: {spec}")


def resolve_chown(chown: str, rootfs: str) -> tuple[int, int]:
    """--chown=user[:group] as dockerd resolves it: numbers as is, names in the target's files;
    a user without a group means a group of the same name (or number)."""
    parts = chown.split(":")
    if len(parts) > 2:
        raise CopyError(f"unable to convert uid/gid chown string to host mapping: invalid chown string format: {chown}")
    user, group = (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    return _lookup(user, rootfs, "etc/passwd", "user"), _lookup(group, rootfs, "etc/group", "group")


def parse_chmod(chmod: str) -> int:
    if not re.fullmatch(r"[0-7]{1,4}", chmod):
        raise CopyError(f"invalid chmod parameter: {chmod}")
    return int(chmod, 8)
