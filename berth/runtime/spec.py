"""Build an OCI runtime ``config.json`` from a container's configuration, as Docker does."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from typing import Any

_MAX_TABLE = 4 << 20  # bytes of /etc/passwd or /etc/group read to look a user up

DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
# capability names by number (linux/capability.h)
CAP_NAMES = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
]


def host_caps() -> list[str]:
    """Every capability berthd itself may hand out ("all" for privileged): its bounding set."""
    try:
        with open("/proc/self/status") as f:
            bnd = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    except (OSError, StopIteration, ValueError):
        return list(DEFAULT_CAPS)
    return ["CAP_" + name for i, name in enumerate(CAP_NAMES) if bnd >> i & 1]


MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _allow(kind: str, major: int | None, minor: int | None, access: str = "rwm") -> dict[str, Any]:
    d: dict[str, Any] = {"allow": True, "type": kind, "access": access}
    if major is not None:
        d["major"] = major
    if minor is not None:
        d["minor"] = minor
    return d


DEVICE_RULES = [
    {"allow": False, "access": "rwm"},
    _allow("c", None, None, "m"), _allow("b", None, None, "m"),
    _allow("c", 1, 3), _allow("c", 1, 5), _allow("c", 1, 7), _allow("c", 1, 8), _allow("c", 1, 9),
    _allow("c", 5, 0), _allow("c", 5, 1), _allow("c", 5, 2), _allow("c", 136, None), _allow("c", 10, 200),
]


def lookup_user(rootfs: str, user: str) -> tuple[int, int, list[int]]:
    """Resolve ``user[:group]`` against the container's /etc/passwd and /etc/group."""
    name, _, group = user.partition(":")
    uid, gid = 0, 0
    passwd = _read_table(rootfs, "etc/passwd")
    username = name if not name.isdigit() else next((p[0] for p in passwd if p[2:3] == [name]), "")
    if name:
        if name.isdigit():
            uid = int(name)
            gid = next((int(p[3]) for p in passwd if p[2] == name and p[3].isdigit()), uid if not group else 0)
        else:
            entry = next((p for p in passwd if p[0] == name), None)
            if entry is None:
                raise ValueError(f"unable to find user {name}: no matching entries in passwd file")
            uid, gid = int(entry[2]), int(entry[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            entry = next((g for g in _read_table(rootfs, "etc/group") if g[0] == group), None)
            if entry is None:
                raise ValueError(f"unable to find group {group}: no matching entries in group file")
            gid = int(entry[2])
    # supplementary groups: those listing the user as a member, as runc and Docker do
    extra = [int(g[2]) for g in _read_table(rootfs, "etc/group")
             if username and len(g) > 3 and username in g[3].split(",") and g[2].isdigit() and int(g[2]) != gid]
    return uid, gid, extra


def _read_table(rootfs: str, rel: str) -> list[list[str]]:
    # The rootfs is the container's, maybe running: open inside it, never by a host path string.
    from berth import safepath

    try:
        root_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = safepath.open_in_root(root_fd, rel, os.O_RDONLY | os.O_NONBLOCK)
        finally:
            os.close(root_fd)
        with os.fdopen(fd, errors="replace") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return []
            text = f.read(_MAX_TABLE)  # a hostile image's /etc/passwd cannot make us read for ever
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line.strip() and not line.startswith("#")]


def build_spec(*, rootfs: str, args: list[str], env: list[str], cwd: str, user: str, hostname: str,
               terminal: bool, stdin: bool, cgroup_path: str, etc_files: dict[str, str],
               readonly_rootfs: bool = False, shm_size: int = 64 << 20,
               extra_mounts: list[dict[str, Any]] | None = None,
               console_size: Sequence[int] | None = None) -> dict[str, Any]:
    """``console_size``: the terminal's [height, width] when the process starts (with ``terminal``)."""
    uid, gid, extra = lookup_user(rootfs, user)
    if not any(e.startswith("PATH=") for e in env):
        env = [f"PATH={DEFAULT_PATH}", *env]
    if not any(e.startswith("HOSTNAME=") for e in env):
        env = [*env, f"HOSTNAME={hostname}"]
    if terminal and not any(e.startswith("TERM=") for e in env):
        env = [*env, "TERM=xterm"]
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"]},
    ]
    for dest, src in etc_files.items():
        mounts.append({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate"]})
    # user mounts last, parents before children, so /a is mounted before /a/b
    mounts += sorted(extra_mounts or [], key=lambda m: m["destination"].rstrip("/").count("/"))
    caps = list(DEFAULT_CAPS)
    process: dict[str, Any] = {
        "terminal": terminal,
        "user": {"uid": uid, "gid": gid, **({"additionalGids": extra} if extra else {})},
        "args": args,
        "env": env,
        "cwd": cwd or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": False,
    }
    if terminal and console_size is not None:
        process["consoleSize"] = console_box(console_size)
    return {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": rootfs, "readonly": readonly_rootfs},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "resources": {"devices": DEVICE_RULES},
            "cgroupsPath": cgroup_path,
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": MASKED_PATHS,
            # crun on cgroup v1 leaves the tmpfs under the cgroup mount writable whatever its options say:
            # a read-only path remounts it (recursively) read-only as runc and Docker have it
            "readonlyPaths": [*READONLY_PATHS, "/sys/fs/cgroup"],
        },
    }


def console_box(size: Sequence[int]) -> dict[str, int]:
    """An OCI ``consoleSize`` from Docker's [height, width]: the runtime sizes the terminal before the
    process runs, so a command that reads its size at once (``stty size``) does not see 0x0."""
    return {"height": int(size[0]), "width": int(size[1])}


def workdir_in_rootfs(rootfs: str, cwd: str) -> None:
    """Create the working directory inside the container if missing, as Docker does."""
    if not cwd or cwd == "/":
        return
    from berth import safepath

    root_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.close(safepath.mkdirs_in_root(root_fd, cwd, 0o755))
    except NotADirectoryError as e:
        raise ValueError(f"working directory {cwd} is not a directory in the container") from e
    finally:
        os.close(root_fd)
