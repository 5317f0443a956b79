"""Container resource usage in the shape of Docker's ``GET /containers/{id}/stats`` (ContainerStatsResponse).

Everything comes from plain file reads: the container's cgroup (v1 per-controller hierarchies under
/sys/fs/cgroup/<controller>/, or the single v2 hierarchy under /sys/fs/cgroup/), /proc/stat for the
host's CPU time and /proc/meminfo for the host's memory. The docker CLI derives CPU % from the
difference between ``cpu_stats`` and ``precpu_stats``, so callers pass the previous sample back in.
"""

from __future__ import annotations

import functools
import os
import time
from datetime import UTC, datetime
from typing import Any

CGROUP_ROOT = "/sys/fs/cgroup"
ZERO_TIME = "0001-01-01T00:00:00Z"
_NS = 1_000_000_000


def _v2() -> bool:
    # Pure v2 only; the hybrid's /sys/fs/cgroup/unified holds no controllers once crun's set-up ran.
    return os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))


def rfc3339nano(ns: int) -> str:
    """Go's RFC3339Nano: UTC, up to nine fractional digits with trailing zeros dropped."""
    sec, frac = divmod(ns, _NS)
    base = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


@functools.cache
def _clk_tck() -> int:
    try:
        return os.sysconf("SC_CLK_TCK") or 100
    except (ValueError, OSError):
        return 100


@functools.cache
def host_memory() -> int:
    """MemTotal in bytes: what Docker reports as the limit of a container without one."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _online_cpus() -> int:
    try:
        return os.sysconf("SC_NPROCESSORS_ONLN")
    except (ValueError, OSError):
        return os.cpu_count() or 0


def system_cpu_usage() -> int:
    """Host CPU time in ns, computed as Docker does: the first 7 fields of /proc/stat's "cpu" line."""
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu "):
                    ticks = sum(int(v) for v in line.split()[1:8])
                    return ticks * _NS // _clk_tck()
    except (OSError, ValueError):
        pass
    return 0


# --- small readers: a missing file or cgroup reads as zero/empty, never raises ------------------------

def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _int(path: str, default: int = 0) -> int:
    s = _read(path)
    if s is None:
        return default
    s = s.strip()
    if s == "max":
        return default
    try:
        return int(s)
    except ValueError:
        return default


def _kv(path: str) -> dict[str, int]:
    """Parse "key value" lines (memory.stat, cpu.stat, cpuacct.stat)."""
    out: dict[str, int] = {}
    for line in (_read(path) or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


@functools.cache
def _v1_mounts() -> dict[str, str]:
    """Controller name → v1 hierarchy directory, for joint mounts like "cpu,cpuacct" too."""
    out: dict[str, str] = {}
    try:
        entries = sorted(os.scandir(CGROUP_ROOT), key=lambda e: e.name)
    except OSError:
        return out
    for e in entries:
        if not e.is_dir():
            continue
        for ctrl in e.name.split(","):
            out.setdefault(ctrl, e.path)
    return out


def _v1_dir(ctrl: str, cgroup_rel: str) -> str:
    base = _v1_mounts().get(ctrl)
    if base is None:
        # Not cached at first use (e.g. mounted later by the daemon's hybrid fix): look again once.
        _v1_mounts.cache_clear()
        base = _v1_mounts().get(ctrl, os.path.join(CGROUP_ROOT, ctrl))
    return os.path.join(base, cgroup_rel.lstrip("/"))


def _v2_dir(cgroup_rel: str) -> str:
    return os.path.join(CGROUP_ROOT, cgroup_rel.lstrip("/"))


def cgroup_exists(cgroup_rel: str) -> bool:
    """Whether the container's cgroup is there, i.e. the runtime created it and has not removed it yet."""
    if _v2():
        return os.path.isfile(os.path.join(_v2_dir(cgroup_rel), "cgroup.procs"))
    # memory is the controller every Berth container is accounted in; pids as a fallback.
    return any(os.path.isfile(os.path.join(_v1_dir(c, cgroup_rel), "cgroup.procs")) for c in ("memory", "pids"))


def _pid_cgroup(pid: int, cid: str) -> str | None:
    """The container's cgroup as /proc/<pid>/cgroup names it, for runtimes that placed it elsewhere.

    Only a path naming the container ID counts: a stale pid may now belong to an unrelated process.
    """
    want = "" if _v2() else "memory"
    for line in (_read(f"/proc/{pid}/cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and (parts[1] == want or want in parts[1].split(",")):
            return parts[2] if cid and cid in parts[2] else None
    return None


# --- the response ----------------------------------------------------------------------------------

def _zero_cpu(v1: bool) -> dict[str, Any]:
    usage: dict[str, Any] = {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0}
    if v1:
        usage["percpu_usage"] = []
    return {"cpu_usage": usage, "system_cpu_usage": 0, "online_cpus": 0,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def _zero_memory(v1: bool) -> dict[str, Any]:
    # The CLI subtracts (total_)inactive_file from usage; the key must be there even when empty.
    if v1:
        return {"usage": 0, "max_usage": 0, "failcnt": 0, "stats": {"total_inactive_file": 0}, "limit": 0}
    return {"usage": 0, "stats": {"inactive_file": 0}, "limit": 0}


def _blkio(entries: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {"io_service_bytes_recursive": entries or None, "io_serviced_recursive": None,
            "io_queue_recursive": None, "io_service_time_recursive": None, "io_wait_time_recursive": None,
            "io_merged_recursive": None, "io_time_recursive": None, "sectors_recursive": None}


def _limit(value: int) -> int:
    # Unlimited reads as a huge number (v1) or "max" → 0 (v2); Docker caps both at the host's memory.
    mem = host_memory()
    if value <= 0 or (mem and value > mem):
        return mem
    return value


def _read_v1(cgroup_rel: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    paths = {c: _v1_dir(c, cgroup_rel) for c in ("memory", "cpuacct", "cpu", "pids", "blkio")}

    mem_dir, acct_dir = paths["memory"], paths["cpuacct"]
    mstats = _kv(os.path.join(mem_dir, "memory.stat"))
    mstats.setdefault("total_inactive_file", 0)
    memory = {"usage": _int(os.path.join(mem_dir, "memory.usage_in_bytes")),
              "max_usage": _int(os.path.join(mem_dir, "memory.max_usage_in_bytes")),
              "failcnt": _int(os.path.join(mem_dir, "memory.failcnt")),
              "stats": mstats,
              "limit": _limit(_int(os.path.join(mem_dir, "memory.limit_in_bytes")))}

    # cpuacct.stat is in USER_HZ ticks; Docker reports nanoseconds.
    acct = _kv(os.path.join(acct_dir, "cpuacct.stat"))
    tick_ns = _NS // _clk_tck()
    percpu = []
    for v in (_read(os.path.join(acct_dir, "cpuacct.usage_percpu")) or "").split():
        try:
            percpu.append(int(v))
        except ValueError:
            pass
    throttle = _kv(os.path.join(paths["cpu"], "cpu.stat"))
    cpu = {"cpu_usage": {"total_usage": _int(os.path.join(acct_dir, "cpuacct.usage")),
                         "percpu_usage": percpu,
                         "usage_in_kernelmode": acct.get("system", 0) * tick_ns,
                         "usage_in_usermode": acct.get("user", 0) * tick_ns},
           "throttling_data": {"periods": throttle.get("nr_periods", 0),
                               "throttled_periods": throttle.get("nr_throttled", 0),
                               "throttled_time": throttle.get("throttled_time", 0)}}

    pids = {"current": _int(os.path.join(paths["pids"], "pids.current")),
            "limit": _int(os.path.join(paths["pids"], "pids.max"))}

    # CFQ/BFQ expose per-cgroup accounting; without them only the throttle files are populated.
    entries: list[dict[str, Any]] = []
    for fname in ("blkio.io_service_bytes_recursive", "blkio.bfq.io_service_bytes_recursive",
                  "blkio.throttle.io_service_bytes_recursive"):
        for line in (_read(os.path.join(paths["blkio"], fname)) or "").splitlines():
            parts = line.split()
            if len(parts) != 3 or ":" not in parts[0]:
                continue  # the trailing "Total N" line has no device
            major, _, minor = parts[0].partition(":")
            try:
                entries.append({"major": int(major), "minor": int(minor), "op": parts[1], "value": int(parts[2])})
            except ValueError:
                pass
        if entries:
            break
    return cpu, memory, pids, _blkio(entries)


def _read_v2(cgroup_rel: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    d = _v2_dir(cgroup_rel)

    mstats = _kv(os.path.join(d, "memory.stat"))
    mstats.setdefault("inactive_file", 0)
    memory = {"usage": _int(os.path.join(d, "memory.current")), "stats": mstats,
              "limit": _limit(_int(os.path.join(d, "memory.max")))}

    # cpu.stat is in microseconds on v2.
    cs = _kv(os.path.join(d, "cpu.stat"))
    cpu = {"cpu_usage": {"total_usage": cs.get("usage_usec", 0) * 1000,
                         "usage_in_kernelmode": cs.get("system_usec", 0) * 1000,
                         "usage_in_usermode": cs.get("user_usec", 0) * 1000},
           "throttling_data": {"periods": cs.get("nr_periods", 0),
                               "throttled_periods": cs.get("nr_throttled", 0),
                               "throttled_time": cs.get("throttled_usec", 0) * 1000}}

    pids = {"current": _int(os.path.join(d, "pids.current")), "limit": _int(os.path.join(d, "pids.max"))}

    # io.stat: "MAJ:MIN rbytes=N wbytes=N rios=N ..."; Docker maps it to lowercase read/write entries.
    entries: list[dict[str, Any]] = []
    for line in (_read(os.path.join(d, "io.stat")) or "").splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        try:
            dev = {"major": int(major), "minor": int(minor)}
            entries.append({**dev, "op": "read", "value": int(fields.get("rbytes", 0))})
            entries.append({**dev, "op": "write", "value": int(fields.get("wbytes", 0))})
        except ValueError:
            pass
    return cpu, memory, pids, _blkio(entries)


def read_stats(cgroup_rel: str, pid: int, name: str, cid: str, previous: dict | None) -> dict:
    """One stats sample for a container.

    ``cgroup_rel`` is the runtime's cgroupsPath (e.g. "/berth/<id>"); ``pid`` the container's init pid,
    used only to locate the cgroup if it is not at ``cgroup_rel`` (pass 0 when not running);
    ``previous`` the sample this call follows (its ``read`` and ``cpu_stats`` become ``preread`` and
    ``precpu_stats``). A missing cgroup yields a zeroed sample rather than an error.
    """
    v1 = not _v2()
    now = time.time_ns()
    rel: str | None = cgroup_rel
    if not cgroup_exists(cgroup_rel):
        rel = _pid_cgroup(pid, cid) if pid > 0 else None
        if rel is not None and not cgroup_exists(rel):
            rel = None
    if rel is not None:
        cpu, memory, pids, blkio = _read_v1(rel) if v1 else _read_v2(rel)
        cpu["system_cpu_usage"] = system_cpu_usage()
        # Docker falls back to the per-CPU list when sysconf cannot tell.
        cpu["online_cpus"] = _online_cpus() or len(cpu["cpu_usage"].get("percpu_usage") or [])
    else:
        cpu, memory, pids, blkio = _zero_cpu(v1), _zero_memory(v1), {"current": 0, "limit": 0}, _blkio(None)

    if previous:
        preread = previous.get("read") or ZERO_TIME
        precpu = previous.get("cpu_stats") or _zero_cpu(v1)
    else:
        preread, precpu = ZERO_TIME, _zero_cpu(v1)

    # "networks" is left out, as Docker does for a container without network interfaces.
    return {"read": rfc3339nano(now), "preread": preread, "pids_stats": pids, "blkio_stats": blkio,
            "num_procs": 0, "storage_stats": {}, "cpu_stats": cpu, "precpu_stats": precpu,
            "memory_stats": memory, "name": "/" + name.lstrip("/"), "id": cid}
