"""HostConfig resources and security options: validated with Docker's wording at create time,
turned into the OCI spec at start."""

from __future__ import annotations

import os
import re
import resource
from typing import Any

from berth.errors import InvalidParameter
from berth.runtime import seccomp, secopt
from berth.runtime.spec import CAP_NAMES, DEFAULT_CAPS, host_caps

MIN_MEMORY = 6 * 1024 * 1024
_MIN_SHARES, _MAX_SHARES = 2, 262144
_CPUSET_PART = re.compile(r"([0-9]{1,18})(?:-([0-9]{1,18}))?")
_RLIMITS = {name[len("RLIMIT_"):].lower(): name for name in dir(resource) if name.startswith("RLIMIT_")}
_NAMESPACED_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                       "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")
_INIT_BINARIES = ["/usr/bin/tini-static", "/usr/bin/catatonit", "/usr/bin/tini"]


def _int(hc: dict[str, Any], key: str) -> int:
    v = hc.get(key)
    if v is None:
        return 0
    if not isinstance(v, int) or isinstance(v, bool):
        raise InvalidParameter(f"HostConfig.{key}: must be an integer")
    return v


def _cap(name: str) -> str:
    n = name.upper()
    if n == "ALL":
        return n
    n = n if n.startswith("CAP_") else "CAP_" + n
    if n[4:] not in CAP_NAMES:
        raise InvalidParameter(f'unknown capability: "{n}"')
    return n


def _cpus_available() -> set[int]:
    return set(os.sched_getaffinity(0))


def _mems_available() -> set[int]:
    for path in ("/sys/fs/cgroup/cpuset.mems.effective", "/sys/devices/system/node/online"):
        try:
            with open(path) as f:
                return parse_cpuset(f.read().strip(), 1 << 16) or {0}
        except (OSError, ValueError):
            continue
    return {0}


def parse_cpuset(s: str, highest: int) -> set[int]:
    """A cpuset list ("0-3,5"). Every number is checked against ``highest`` before any range is
    expanded, so "0-40000000" costs nothing. ValueError for bad syntax, LookupError for an
    entry above ``highest``."""
    bounds = []
    for part in s.split(","):
        m = _CPUSET_PART.fullmatch(part)
        if not m:
            raise ValueError(part)
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a:
            raise ValueError(part)
        if b > highest:
            raise LookupError(part)
        bounds.append((a, b))
    return {n for a, b in bounds for n in range(a, b + 1)}


def _check_cpuset(hc: dict[str, Any], field: str, what: str, have: set[int]) -> None:
    """Docker's words: "Invalid value X for cpuset cpus", "Requested CPUs are not available"."""
    raw = hc.get(field)
    if not raw:
        return
    try:
        want = parse_cpuset(raw, max(have, default=0))
    except ValueError as e:
        raise InvalidParameter(f"HostConfig.{field}: Invalid value {raw} for cpuset {what}") from e
    except LookupError:
        want = None
    if want is None or not want <= have:
        noun = "CPUs" if what == "cpus" else "memory nodes"
        raise InvalidParameter(f"Requested {noun} are not available - requested {raw}, available: "
                               f"{_fmt_cpus(have)}")


def validate(hc: dict[str, Any]) -> list[str]:
    """Raise InvalidParameter for a bad HostConfig; return the create warnings."""
    mem = _int(hc, "Memory")
    if mem < 0 or (0 < mem < MIN_MEMORY):
        raise InvalidParameter("HostConfig.Memory: Minimum memory limit allowed is 6MB")
    swap = _int(hc, "MemorySwap")
    if swap > 0 and (not mem or swap < mem):
        raise InvalidParameter("HostConfig.MemorySwap: Minimum memoryswap limit should be larger than memory limit, "
                               "see usage")
    nano = _int(hc, "NanoCpus")
    ncpu = os.cpu_count() or 1
    if nano and _int(hc, "CpuPeriod"):
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano and _int(hc, "CpuQuota"):
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    if nano < 0 or nano > ncpu * 10**9:
        raise InvalidParameter(f"HostConfig.NanoCpus: Range of CPUs is from 0.01 to {ncpu}.00, as there are only "
                               f"{ncpu} CPUs available")
    period = _int(hc, "CpuPeriod")
    if period and not 1000 <= period <= 1000000:
        raise InvalidParameter("HostConfig.CpuPeriod: CPU cfs period can not be less than 1ms (i.e. 1000) or larger "
                               "than 1s (i.e. 1000000)")
    quota = _int(hc, "CpuQuota")
    if quota and quota < 1000 and quota != -1:
        raise InvalidParameter("HostConfig.CpuQuota: CPU cfs quota can not be less than 1ms (i.e. 1000)")
    shares = _int(hc, "CpuShares")
    if shares:  # as dockerd does, out-of-range shares are moved to the nearest allowed value
        hc["CpuShares"] = min(max(shares, _MIN_SHARES), _MAX_SHARES)
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1 and not 0 <= _int(hc, "MemorySwappiness") <= 100:
        raise InvalidParameter(f"HostConfig.MemorySwappiness: Invalid value: {swappiness}, valid memory swappiness "
                               "range is 0-100")
    reservation = _int(hc, "MemoryReservation")
    if reservation < 0 or 0 < reservation < MIN_MEMORY:
        raise InvalidParameter("HostConfig.MemoryReservation: Minimum memory reservation allowed is 6MB")
    if mem > 0 and reservation > 0 and mem < reservation:
        raise InvalidParameter("HostConfig.MemoryReservation: Minimum memory limit can not be less than memory "
                               "reservation limit, see usage")
    if not -1000 <= _int(hc, "OomScoreAdj") <= 1000:
        raise InvalidParameter(f"HostConfig.OomScoreAdj: Invalid value {hc['OomScoreAdj']}, range for oom score adj "
                               "is [-1000, 1000]")
    blkio = _int(hc, "BlkioWeight")
    if blkio and not 10 <= blkio <= 1000:
        raise InvalidParameter("HostConfig.BlkioWeight: Range of blkio weight is from 10 to 1000")
    _check_cpuset(hc, "CpusetCpus", "cpus", _cpus_available())
    _check_cpuset(hc, "CpusetMems", "mems", _mems_available())
    pids = hc.get("PidsLimit")
    if pids is not None and (not isinstance(pids, int) or isinstance(pids, bool)):
        raise InvalidParameter("HostConfig.PidsLimit: must be an integer")
    for u in hc.get("Ulimits") or []:
        if not isinstance(u, dict) or str(u.get("Name", "")).lower() not in _RLIMITS:
            name = u.get("Name") if isinstance(u, dict) else u
            raise InvalidParameter(f"HostConfig.Ulimits: invalid ulimit type: {name}")
        soft, hard = u.get("Soft", 0), u.get("Hard", 0)
        if not isinstance(soft, int) or not isinstance(hard, int) or (hard >= 0 and soft > hard):
            raise InvalidParameter(f"HostConfig.Ulimits: ulimit soft limit must be less than or equal to hard limit: "
                                   f"{soft} > {hard}")
    for field in ("CapAdd", "CapDrop"):
        for c in hc.get(field) or []:
            _cap(str(c))
    warnings = secopt.validate(hc.get("SecurityOpt"))
    for k in (hc.get("Sysctls") or {}):
        if not (k in _NAMESPACED_SYSCTLS or k.startswith(("fs.mqueue.", "net."))):
            raise InvalidParameter(f"HostConfig.Sysctls: sysctl '{k}' is not allowed")
        if k.startswith("net.") and hc.get("NetworkMode") == "host":
            raise InvalidParameter(f"HostConfig.Sysctls: sysctl '{k}' not allowed in host network namespace")
    for d in hc.get("Devices") or []:
        if not isinstance(d, dict) or not str(d.get("PathOnHost", "")).startswith("/"):
            raise InvalidParameter(f"HostConfig.Devices: invalid device {d!r}")
        if not os.path.exists(d["PathOnHost"]):
            raise InvalidParameter(f"HostConfig.Devices: error gathering device information while adding custom "
                                   f"device \"{d['PathOnHost']}\": no such file or directory")
    if hc.get("Init") and not init_binary():
        raise InvalidParameter("HostConfig.Init: no init binary found (apt-get install tini)")
    return warnings


def _fmt_cpus(cpus: set[int]) -> str:
    s = sorted(cpus)
    return f"{s[0]}-{s[-1]}" if s and s == list(range(s[0], s[-1] + 1)) else ",".join(map(str, s))


def init_binary() -> str | None:
    return next((p for p in _INIT_BINARIES if os.path.exists(p)), None)


def capabilities(hc: dict[str, Any]) -> list[str]:
    if hc.get("Privileged"):
        return host_caps()
    caps = list(DEFAULT_CAPS)
    drops = [_cap(c) for c in hc.get("CapDrop") or []]
    adds = [_cap(c) for c in hc.get("CapAdd") or []]
    if "ALL" in drops:
        caps = []
    caps = [c for c in caps if c not in drops]
    if "ALL" in adds:
        return host_caps()
    for c in adds:
        if c not in caps and c not in drops:
            caps.append(c)
    return caps


def resources(hc: dict[str, Any]) -> dict[str, Any]:
    """The memory, CPU and pids limits of ``hc`` as an OCI ``linux.resources`` object (for the spec,
    and for ``<runtime> update``)."""
    res: dict[str, Any] = {}
    mem: dict[str, Any] = {}
    if hc.get("Memory"):
        mem["limit"] = hc["Memory"]
        swap = hc.get("MemorySwap") or 0
        mem["swap"] = -1 if swap == -1 else (swap or hc["Memory"] * 2)
    if hc.get("MemoryReservation"):
        mem["reservation"] = hc["MemoryReservation"]
    if hc.get("OomKillDisable"):
        mem["disableOOMKiller"] = True
    if mem:
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    if hc.get("NanoCpus"):
        cpu["period"] = 100000
        cpu["quota"] = hc["NanoCpus"] * 100000 // 10**9
    if hc.get("CpuPeriod"):
        cpu["period"] = hc["CpuPeriod"]
    if hc.get("CpuQuota"):
        cpu["quota"] = hc["CpuQuota"]
    if hc.get("CpuShares"):
        cpu["shares"] = hc["CpuShares"]
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if hc.get("CpusetMems"):
        cpu["mems"] = hc["CpusetMems"]
    if cpu:
        res["cpu"] = cpu
    pids = hc.get("PidsLimit")
    if pids:
        res["pids"] = {"limit": pids if pids > 0 else -1}
    if hc.get("BlkioWeight") and blkio_weight_supported():
        res["blockIO"] = {"weight": hc["BlkioWeight"]}
    return res


def blkio_weight_supported() -> bool:
    """Whether the blkio controller has a weight file (CFQ's, or BFQ's on cgroup v1); often it has not."""
    return any(os.path.exists(os.path.join("/sys/fs/cgroup/blkio", f)) for f in ("blkio.weight", "blkio.bfq.weight"))


def apply(spec: dict[str, Any], hc: dict[str, Any], init_args: bool = True) -> None:
    """Resources, capabilities, seccomp, sysctls, devices, ulimits and init into ``spec``."""
    linux = spec["linux"]
    res = linux.setdefault("resources", {})
    res.update(resources(hc))
    proc = spec["process"]
    caps = capabilities(hc)
    proc["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
    if hc.get("Ulimits"):
        proc["rlimits"] = [{"type": _RLIMITS[u["Name"].lower()], "soft": u["Soft"], "hard": u["Hard"]}
                           for u in hc["Ulimits"]]
    sec = secopt.parse(hc.get("SecurityOpt"))
    proc["noNewPrivileges"] = sec.no_new_privileges
    if hc.get("Privileged"):
        linux["maskedPaths"] = []
        linux["readonlyPaths"] = []
        res["devices"] = [{"allow": True, "access": "rwm"}]
        for m in spec["mounts"]:
            if m["destination"] in ("/sys", "/sys/fs/cgroup"):
                m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
    else:  # privileged containers run without seccomp, as in Docker
        flt = seccomp.for_container(sec.seccomp, caps)
        if flt is not None:
            linux["seccomp"], bpf = flt
            if bpf:
                spec.setdefault("annotations", {})[seccomp.BPF_ANNOTATION] = bpf
    if hc.get("Sysctls"):
        linux["sysctl"] = dict(hc["Sysctls"])
    for d in hc.get("Devices") or []:
        host = d["PathOnHost"]
        st = os.stat(host)
        kind = "c" if (st.st_mode & 0o170000) == 0o020000 else "b"
        linux.setdefault("devices", []).append({
            "path": d.get("PathInContainer") or host, "type": kind, "major": os.major(st.st_rdev),
            "minor": os.minor(st.st_rdev), "fileMode": st.st_mode & 0o777, "uid": 0, "gid": 0})
        res.setdefault("devices", []).append({"allow": True, "type": kind, "major": os.major(st.st_rdev),
                                              "minor": os.minor(st.st_rdev),
                                              "access": d.get("CgroupPermissions") or "rwm"})
    if hc.get("Init") and init_args:
        binary = init_binary()
        assert binary is not None
        spec["mounts"].append({"destination": "/sbin/docker-init", "type": "bind", "source": binary,
                               "options": ["rbind", "ro", "rprivate"]})
        proc["args"] = ["/sbin/docker-init", "--", *proc["args"]]
    groups = hc.get("GroupAdd") or []
    if groups:
        from berth.runtime.spec import _read_table

        extra = list(proc["user"].get("additionalGids") or [])
        table = _read_table(spec["root"]["path"], "etc/group")
        for g in groups:
            if str(g).isdigit():
                extra.append(int(g))
            else:
                entry = next((row for row in table if row[0] == g), None)
                if entry is None:
                    raise InvalidParameter(f"Unable to find group {g}: no matching entries in group file")
                extra.append(int(entry[2]))
        proc["user"]["additionalGids"] = extra
