"""A container's mounts: parse ``-v``/``Binds``, ``--mount``/``Mounts``, ``Config.Volumes``, the
image's ``VOLUME`` list and ``VolumesFrom`` into one list, with Docker's rules and wording.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tempfile
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from berth import safepath
from berth.errors import InvalidParameter, NotFound
from berth.layers import mount as mnt

_PROPAGATION = {"shared", "rshared", "private", "rprivate", "slave", "rslave"}
_BIND_MODES = {"ro", "rw", "z", "Z", "nocopy", "consistent", "cached", "delegated"} | _PROPAGATION


class Volumes(Protocol):
    def create(self, name: str | None, driver: str = "local", options: dict[str, str] | None = None,
               labels: dict[str, str] | None = None, anonymous: bool = False) -> Any: ...


@dataclass
class MountPoint:
    Type: str  # volume | bind | tmpfs
    Destination: str
    Source: str = ""  # host path for binds; volume name for volumes (resolved at start)
    Name: str = ""
    RW: bool = True
    Mode: str = ""
    Propagation: str = ""
    NoCopy: bool = False
    Subpath: str = ""
    Anonymous: bool = False
    TmpfsSize: int = 0
    TmpfsMode: int = 0
    CreateSource: bool = False  # -v creates a missing host path; --mount refuses

    def to_api(self, volume_root: str) -> dict[str, Any]:
        """The shape of ``Mounts`` in container inspect."""
        if self.Type == "volume":
            return {"Type": "volume", "Name": self.Name, "Source": os.path.join(volume_root, self.Name, "_data"),
                    "Destination": self.Destination, "Driver": "local", "Mode": self.Mode or "z", "RW": self.RW,
                    "Propagation": ""}
        if self.Type == "bind":
            return {"Type": "bind", "Source": self.Source, "Destination": self.Destination, "Mode": self.Mode,
                    "RW": self.RW, "Propagation": self.Propagation or "rprivate"}
        return {"Type": "tmpfs", "Source": "", "Destination": self.Destination, "Mode": "", "RW": self.RW,
                "Propagation": ""}


def _check_target(target: str, spec: str, kind: str) -> str:
    if not target or not target.startswith("/"):
        raise InvalidParameter(f"invalid mount config for type \"{kind}\": invalid mount path: '{target}' "
                               "mount path must be absolute" if spec == "" else
                               f"invalid volume specification: '{spec}': invalid mount config for type \"{kind}\": "
                               f"invalid mount path: '{target}' mount path must be absolute")
    target = posixpath.normpath(target)
    if target == "/":
        raise InvalidParameter(f"invalid specification: destination can't be '/' in '{spec or target}'")
    return target


def parse_bind(spec: str) -> MountPoint:
    """``name:/path[:mode]`` or ``/host:/path[:mode]`` (HostConfig.Binds, ``docker run -v``)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise InvalidParameter(f"invalid volume specification: '{spec}'")
    src, dst = parts[0], parts[1]
    modes = [m for m in (parts[2].split(",") if len(parts) == 3 else []) if m]
    for m in modes:
        if m not in _BIND_MODES:
            raise InvalidParameter(f"invalid mode: {parts[2]}")
    if "ro" in modes and "rw" in modes:
        raise InvalidParameter(f"invalid mode: {parts[2]}")
    prop = next((m for m in modes if m in _PROPAGATION), "")
    is_bind = src.startswith("/")
    dst = _check_target(dst, spec, "bind" if is_bind else "volume")
    mode = ",".join(m for m in modes if m not in ("ro", "rw", "nocopy") and m not in _PROPAGATION)
    if is_bind:
        return MountPoint("bind", dst, Source=posixpath.normpath(src), RW="ro" not in modes, Mode=mode,
                          Propagation=prop or "rprivate", CreateSource=True)
    if prop:
        raise InvalidParameter(f"invalid mode: {parts[2]}")
    from berth.volumes.store import validate_name

    validate_name(src)
    return MountPoint("volume", dst, Name=src, RW="ro" not in modes, Mode=mode, NoCopy="nocopy" in modes)


def parse_mount(m: dict[str, Any]) -> MountPoint:
    """One entry of HostConfig.Mounts (``docker run --mount``)."""
    if not isinstance(m, dict):
        raise InvalidParameter("HostConfig.Mounts: each mount must be an object")
    kind = m.get("Type") or ""
    if kind not in ("bind", "volume", "tmpfs"):
        raise InvalidParameter(f"invalid mount config for type \"{kind}\": mount type unknown")
    target = _check_target(m.get("Target") or "", "", kind)
    ro = bool(m.get("ReadOnly"))
    src = m.get("Source") or ""
    if kind == "bind":
        if not src:
            raise InvalidParameter("invalid mount config for type \"bind\": field Source must not be empty")
        if not src.startswith("/"):
            raise InvalidParameter(f"invalid mount config for type \"bind\": invalid mount path: '{src}' "
                                   "mount path must be absolute")
        opts = m.get("BindOptions") or {}
        create = bool(opts.get("CreateMountpoint"))
        if not create and not os.path.exists(src):
            raise InvalidParameter(f"invalid mount config for type \"bind\": bind source path does not exist: {src}")
        prop = opts.get("Propagation") or "rprivate"
        if prop not in _PROPAGATION:
            raise InvalidParameter(f"invalid mount config for type \"bind\": invalid propagation mode: {prop}")
        return MountPoint("bind", target, Source=posixpath.normpath(src), RW=not ro, Propagation=prop,
                          CreateSource=create)
    if kind == "tmpfs":
        if src:
            raise InvalidParameter("invalid mount config for type \"tmpfs\": field Source must not be specified")
        opts = m.get("TmpfsOptions") or {}
        size = opts.get("SizeBytes") or 0
        mode = opts.get("Mode") or 0
        if not isinstance(size, int) or size < 0:
            raise InvalidParameter("invalid mount config for type \"tmpfs\": invalid tmpfs size")
        return MountPoint("tmpfs", target, RW=not ro, TmpfsSize=size, TmpfsMode=mode)
    opts = m.get("VolumeOptions") or {}
    sub = opts.get("Subpath") or ""
    if sub and (sub.startswith("/") or ".." in sub.split("/")):
        raise InvalidParameter(f"invalid mount config for type \"volume\": subpath must be a relative path "
                               f"within the volume: {sub}")
    if src:
        from berth.volumes.store import validate_name

        validate_name(src)
    return MountPoint("volume", target, Name=src, RW=not ro, NoCopy=bool(opts.get("NoCopy")), Subpath=sub,
                      Anonymous=not src)


def resolve(body: dict[str, Any], hc: dict[str, Any], image_volumes: dict[str, Any] | None,
            volumes_from: list[tuple[list[MountPoint], bool | None]]) -> list[MountPoint]:
    """All mounts of a new container, validated; later sources never override earlier targets."""
    mounts: list[MountPoint] = []
    seen: set[str] = set()

    def add(mp: MountPoint, explicit: bool = True) -> None:
        if mp.Destination in seen:
            if explicit:
                raise InvalidParameter(f"Duplicate mount point: {mp.Destination}")
            return
        seen.add(mp.Destination)
        mounts.append(mp)

    binds = hc.get("Binds") or []
    if not isinstance(binds, list):
        raise InvalidParameter("HostConfig.Binds: must be a list of strings")
    for spec in binds:
        add(parse_bind(str(spec)))
    raw_mounts = hc.get("Mounts") or []
    if not isinstance(raw_mounts, list):
        raise InvalidParameter("HostConfig.Mounts: must be a list")
    for m in raw_mounts:
        add(parse_mount(m))
    for tmpfs_target, opts in (hc.get("Tmpfs") or {}).items():
        add(MountPoint("tmpfs", _check_target(tmpfs_target, tmpfs_target, "tmpfs"), Mode=str(opts or "")))
    for src_mounts, ro in volumes_from:
        for mp in src_mounts:
            if mp.Type == "tmpfs":
                continue
            copy = MountPoint(**asdict(mp))
            copy.Anonymous = False  # it belongs to the container it came from
            if ro is not None:
                copy.RW = not ro
            add(copy, explicit=False)
    for target in list((body.get("Volumes") or {}).keys()) + list((image_volumes or {}).keys()):
        t = _check_target(target, target, "volume")
        add(MountPoint("volume", t, Anonymous=True), explicit=False)
    return mounts


def parse_volumes_from(spec: str) -> tuple[str, bool | None]:
    name, _, mode = spec.partition(":")
    if mode not in ("", "ro", "rw"):
        raise InvalidParameter(f"invalid mode for volumes-from: {mode}")
    if not name:
        raise NotFound(f"No such container: {spec}")
    return name, (None if not mode else mode == "ro")


def copy_up(rootfs: str, dest: str, volume_path: str) -> None:
    """Copy the image's content at ``dest`` into an empty volume, keeping owners and modes.

    The volume may be shared with running containers, which can rewrite it while we copy: the
    content is read through descriptors inside the rootfs and written through descriptors
    inside the volume (a tar through a scratch file next to the volume), never by path.
    """
    from berth.layers.tarapply import UnsafeTarError, apply_tar_fd
    from berth.tartree import TarTreeWriter

    root_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            src_fd = safepath.open_dir_in_root(root_fd, dest)
        except OSError:
            return  # missing, or not a directory: nothing to copy
    finally:
        os.close(root_fd)
    vol_fd = os.open(volume_path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not os.listdir(src_fd) or os.listdir(vol_fd):
            return
        with tempfile.NamedTemporaryFile(dir=os.path.dirname(volume_path), prefix=".copyup-") as tmp:
            with TarTreeWriter(tmp) as w:  # type: ignore[arg-type]
                w.tree("", src_fd)
            tmp.flush()
            try:
                apply_tar_fd(tmp.name, vol_fd, "plain")
            except (OSError, UnsafeTarError) as e:
                raise InvalidParameter(f"copying image content at {dest} into its volume failed: {e}") from e
        st = os.fstat(src_fd)  # the volume's root takes the directory's owner and mode, as cp -a did
        os.fchown(vol_fd, st.st_uid, st.st_gid)
        os.fchmod(vol_fd, stat.S_IMODE(st.st_mode))
    finally:
        os.close(src_fd)
        os.close(vol_fd)


def stage_subpath(volume_path: str, subpath: str, staging: str) -> str:
    """Bind-mount ``subpath`` of a volume at ``staging`` (a path only the daemon can reach) and
    return it as the mount source for the runtime (CVE-2017-1002101).

    A container sharing the volume could swap a component of ``subpath`` for a symlink between a
    check and the runtime's mount. So the subpath is opened once, inside the volume
    (``RESOLVE_IN_ROOT``), and that very descriptor is what gets mounted (``/proc/self/fd/N``);
    the runtime then mounts ``staging``, which no container can touch.
    """
    vol_fd = os.open(volume_path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        try:
            fd = safepath.open_in_root(vol_fd, subpath, safepath.O_PATH)
        except OSError as e:
            raise InvalidParameter(f"cannot access path {os.path.join(volume_path, subpath)}: "
                                   f"volume subpath does not exist") from e
    finally:
        os.close(vol_fd)
    try:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        os.makedirs(os.path.dirname(staging), 0o700, exist_ok=True)
        if is_dir:
            os.makedirs(staging, 0o700, exist_ok=True)
        else:
            os.close(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        mnt.bind_fd(fd, staging)
    finally:
        os.close(fd)
    return staging


def unstage(staging_dir: str) -> None:
    """Undo every ``stage_subpath`` under ``staging_dir`` (after the container stopped)."""
    try:
        names = os.listdir(staging_dir)
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(staging_dir, name)
        mnt.unmount(path)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)
            else:
                os.unlink(path)
        except OSError:
            pass  # still mounted somewhere (a lazy detach in progress); removed with the bundle
