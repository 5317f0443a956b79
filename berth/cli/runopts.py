"""The flags of ``run``/``create`` and their translation to the Engine API's create body."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from berth.cli.common import DURATION, SIZE

_opts: list[Callable[[Any], Any]] = []


def _o(*decls: str, **kw: Any) -> None:
    _opts.append(click.option(*decls, **kw))


def _multi(*decls: str, help: str) -> None:
    _o(*decls, multiple=True, help=help)


_o("-a", "--attach", "attach_streams", multiple=True, type=click.Choice(["stdin", "stdout", "stderr"],
   case_sensitive=False), help="Attach to STDIN, STDOUT or STDERR")
_o("-d", "--detach", is_flag=True, help="Run container in background and print container ID")
_o("--detach-keys", default=None, help="Override the key sequence for detaching a container")
_o("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached")
_o("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY")
_o("--rm", is_flag=True, help="Automatically remove the container and its associated anonymous volumes when it exits")
_o("--name", default=None, help="Assign a name to the container")
_multi("-e", "--env", help="Set environment variables")
_multi("--env-file", help="Read in a file of environment variables")
_multi("-v", "--volume", help="Bind mount a volume")
_multi("--mount", help="Attach a filesystem mount to the container")
_multi("--tmpfs", help="Mount a tmpfs directory")
_multi("-p", "--publish", help="Publish a container's port(s) to the host")
_o("-P", "--publish-all", is_flag=True, help="Publish all exposed ports to random ports")
_multi("--expose", help="Expose a port or a range of ports")
_o("--network", "--net", "network", default=None, help="Connect a container to a network")
_multi("--network-alias", help="Add network-scoped alias for the container")
_o("--ip", default=None, help="IPv4 address (e.g., 172.30.100.104)")
_o("-w", "--workdir", default=None, help="Working directory inside the container")
_o("-u", "--user", default=None, help="Username or UID (format: <name|uid>[:<group|gid>])")
_multi("--group-add", help="Add additional groups to join")
_o("--entrypoint", default=None, help="Overwrite the default ENTRYPOINT of the image")
_o("--restart", default=None, help="Restart policy to apply when a container exits (default \"no\")")
_o("-m", "--memory", type=SIZE, default=None, help="Memory limit")
_o("--memory-reservation", type=SIZE, default=None, help="Memory soft limit")
_o("--memory-swap", default=None, help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
_o("--cpus", type=float, default=None, help="Number of CPUs")
_o("-c", "--cpu-shares", type=int, default=None, help="CPU shares (relative weight)")
_o("--cpuset-cpus", default=None, help="CPUs in which to allow execution (0-3, 0,1)")
_o("--pids-limit", type=int, default=None, help="Tune container pids limit (set -1 for unlimited)")
_o("--shm-size", type=SIZE, default=None, help="Size of /dev/shm")
_multi("--ulimit", help="Ulimit options")
_multi("--device", help="Add a host device to the container")
_o("--init", is_flag=True, help="Run an init inside the container that forwards signals and reaps processes")
_o("--read-only", is_flag=True, help="Mount the container's root filesystem as read only")
_o("--privileged", is_flag=True, help="Give extended privileges to this container")
_multi("--cap-add", help="Add Linux capabilities")
_multi("--cap-drop", help="Drop Linux capabilities")
_multi("--security-opt", help="Security Options")
_multi("--sysctl", help="Sysctl options")
_multi("-l", "--label", help="Set meta data on a container")
_multi("--label-file", help="Read in a line delimited file of labels")
_o("-h", "--hostname", default=None, help="Container host name")
_o("--domainname", default=None, help="Container NIS domain name")
_multi("--add-host", help="Add a custom host-to-IP mapping (host:ip)")
_multi("--dns", help="Set custom DNS servers")
_multi("--dns-search", help="Set custom DNS search domains")
_multi("--dns-option", help="Set DNS options")
_o("--health-cmd", default=None, help="Command to run to check health")
_o("--health-interval", type=DURATION, default=None, help="Time between running the check (ms|s|m|h)")
_o("--health-timeout", type=DURATION, default=None, help="Maximum time to allow one check to run (ms|s|m|h)")
_o("--health-start-period", type=DURATION, default=None, help="Start period for the container to initialize")
_o("--health-retries", type=int, default=None, help="Consecutive failures needed to report unhealthy")
_o("--no-healthcheck", is_flag=True, help="Disable any container-specified HEALTHCHECK")
_o("--log-driver", default=None, help="Logging driver for the container")
_multi("--log-opt", help="Log driver options")
_o("--platform", default=None, help="Set platform if server is multi-platform capable")
_o("--pull", type=click.Choice(["always", "missing", "never"]), default="missing",
   help='Pull image before running ("always", "missing", "never")')
_o("-q", "--quiet", is_flag=True, help="Suppress the pull output")
_o("--stop-signal", default=None, help="Signal to stop the container")
_o("--stop-timeout", type=int, default=None, help="Timeout (in seconds) to stop a container")
_o("--ipc", default=None, help="IPC mode to use")
_o("--pid", default=None, help="PID namespace to use")
_o("--uts", default=None, help="UTS namespace to use")
_o("--userns", default=None, help="User namespace to use")
_o("--runtime", default=None, help="Runtime to use for this container")
_o("--cidfile", default=None, help="Write the container ID to the file")
_o("--oom-kill-disable", is_flag=True, help="Disable OOM Killer")
_o("--sig-proxy", type=click.BOOL, default=True, is_flag=False, flag_value=True,
   help="Proxy received signals to the process (default true)")
_o("--cgroupns", default=None, help="Cgroup namespace to use (host|private)")


def container_options(f: Any) -> Any:
    for opt in reversed(_opts):
        f = opt(f)
    return f


def restart_policy(v: str) -> dict[str, Any]:
    name, _, count = v.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise click.BadParameter(f"invalid restart policy {v!r}", param_hint="'--restart'")
    if count and (name != "on-failure" or not count.isdigit()):
        raise click.BadParameter(f"invalid restart policy {v!r}: maximum retry count is only valid with on-failure",
                                 param_hint="'--restart'")
    return {"Name": "" if name == "no" else name, "MaximumRetryCount": int(count or 0)}


def _read_kv_file(path: str, what: str) -> list[str]:
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise click.BadParameter(f"{path}: {e.strerror}", param_hint=f"'--{what}-file'") from e
    out: list[str] = []
    for line in lines:
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if "=" not in s and what == "env":
            if s in os.environ:
                out.append(f"{s}={os.environ[s]}")
            continue
        out.append(s)
    return out


def env_list(env: tuple[str, ...], files: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for f in files:
        out += _read_kv_file(f, "env")
    for e in env:
        if "=" in e:
            out.append(e)
        elif e in os.environ:  # -e NAME takes the client's value, as docker
            out.append(f"{e}={os.environ[e]}")
    return out


def _range(s: str, flag: str) -> list[int]:
    a, _, b = s.partition("-")
    lo, hi = int(a), int(b or a)
    if not (0 < lo <= hi <= 65535) or hi - lo > 65535:
        raise click.BadParameter(f"invalid port range {s!r}", param_hint=flag)
    return list(range(lo, hi + 1))


def port_bindings(publish: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]]:
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for p in publish:
        bad = click.BadParameter(f"invalid publish opts format {p!r}", param_hint="'-p' / '--publish'")
        spec, _, proto = p.partition("/")
        proto = proto or "tcp"
        if proto not in ("tcp", "udp", "sctp"):
            raise bad
        ip = ""
        if spec.startswith("["):
            ip, sep, spec = spec[1:].partition("]:")
            if not sep:
                raise bad
            parts = spec.split(":")
            if len(parts) != 2:
                raise bad
            host, ctr = parts
        else:
            parts = spec.split(":")
            if len(parts) == 1:
                host, ctr = "", parts[0]
            elif len(parts) == 2:
                host, ctr = parts
            elif len(parts) == 3:
                ip, host, ctr = parts
            else:
                raise bad
        if not ctr or not all(x.isdigit() for x in ctr.split("-", 1)) or \
                (host and not all(x.isdigit() for x in host.split("-", 1))):
            raise bad
        cports = _range(ctr, "'-p' / '--publish'")
        hports = _range(host, "'-p' / '--publish'") if host else []
        if hports and len(hports) != len(cports) and len(hports) != 1:
            raise click.BadParameter(f"port ranges don't match in {p!r}", param_hint="'-p' / '--publish'")
        for i, cp in enumerate(cports):
            key = f"{cp}/{proto}"
            exposed[key] = {}
            hp = "" if not hports else str(hports[i] if len(hports) > 1 else hports[0])
            if len(hports) == 1 and len(cports) > 1:
                hp = f"{hports[0]}"
            bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": hp})
    return exposed, bindings


def parse_mount(spec: str) -> dict[str, Any]:
    m: dict[str, Any] = {"Type": "volume"}
    for field in spec.split(","):
        k, eq, v = field.partition("=")
        k = k.strip().lower()
        if k in ("type",):
            m["Type"] = v
        elif k in ("source", "src"):
            m["Source"] = v
        elif k in ("target", "destination", "dst"):
            m["Target"] = v
        elif k in ("readonly", "ro"):
            m["ReadOnly"] = (not eq) or v.lower() in ("1", "true")
        elif k == "bind-propagation":
            m.setdefault("BindOptions", {})["Propagation"] = v
        elif k == "volume-nocopy":
            m.setdefault("VolumeOptions", {})["NoCopy"] = (not eq) or v.lower() in ("1", "true")
        elif k == "volume-driver":
            m.setdefault("VolumeOptions", {}).setdefault("DriverConfig", {})["Name"] = v
        elif k == "volume-opt":
            ok, _, ov = v.partition("=")
            m.setdefault("VolumeOptions", {}).setdefault("DriverConfig", {}).setdefault("Options", {})[ok] = ov
        elif k == "volume-label":
            lk, _, lv = v.partition("=")
            m.setdefault("VolumeOptions", {}).setdefault("Labels", {})[lk] = lv
        elif k == "tmpfs-size":
            m.setdefault("TmpfsOptions", {})["SizeBytes"] = SIZE.convert(v, None, None)
        elif k == "tmpfs-mode":
            m.setdefault("TmpfsOptions", {})["Mode"] = int(v, 8)
        else:
            raise click.BadParameter(f"unexpected key '{k}' in '{spec}'", param_hint="'--mount'")
    if "Target" not in m:
        raise click.BadParameter("target is required", param_hint="'--mount'")
    return m


def _ns(v: float | None) -> int | None:
    return None if v is None else int(v * 1e9)


def create_body(o: dict[str, Any], image: str, command: tuple[str, ...]) -> dict[str, Any]:
    """The POST /containers/create body for the parsed flags ``o``."""
    exposed, bindings = port_bindings(o["publish"])
    for e in o["expose"]:
        port, _, proto = e.partition("/")
        for p in _range(port, "'--expose'"):
            exposed[f"{p}/{proto or 'tcp'}"] = {}
    binds: list[str] = []
    volumes: dict[str, Any] = {}
    for v in o["volume"]:
        parts = v.split(":")
        if len(parts) == 1:
            volumes[v] = {}
        elif len(parts) in (2, 3) and parts[1].startswith("/"):
            binds.append(v)
        else:
            raise click.BadParameter(f"invalid spec: {v}", param_hint="'-v' / '--volume'")
    labels: dict[str, str] = {}
    for f in o["label_file"]:
        for line in _read_kv_file(f, "label"):
            k, _, val = line.partition("=")
            labels[k] = val
    for lab in o["label"]:
        k, _, val = lab.partition("=")
        labels[k] = val
    tmpfs = {}
    for t in o["tmpfs"]:
        path, _, opts = t.partition(":")
        tmpfs[path] = opts
    ulimits = []
    for u in o["ulimit"]:
        name, _, lim = u.partition("=")
        soft, _, hard = lim.partition(":")
        try:
            ulimits.append({"Name": name, "Soft": int(soft), "Hard": int(hard or soft)})
        except ValueError as e:
            raise click.BadParameter(f"invalid ulimit argument: {u}", param_hint="'--ulimit'") from e
    devices = []
    for d in o["device"]:
        parts = d.split(":")
        devices.append({"PathOnHost": parts[0], "PathInContainer": parts[1] if len(parts) > 1 else parts[0],
                        "CgroupPermissions": parts[2] if len(parts) > 2 else "rwm"})
    sysctls = {}
    for s in o["sysctl"]:
        k, _, val = s.partition("=")
        sysctls[k] = val
    log_opts = {}
    for lo in o["log_opt"]:
        k, eq, val = lo.partition("=")
        if not eq:
            raise click.BadParameter(f"invalid key/value pair format: {lo!r}", param_hint="'--log-opt'")
        log_opts[k] = val
    hc: dict[str, Any] = {
        "Binds": binds or None, "Mounts": [parse_mount(m) for m in o["mount"]] or None,
        "PortBindings": bindings or None, "PublishAllPorts": o["publish_all"],
        "NetworkMode": o["network"] or "default", "AutoRemove": o["rm"],
        "Memory": o["memory"] or 0, "MemoryReservation": o["memory_reservation"] or 0,
        "NanoCpus": _ns(o["cpus"]) or 0, "CpuShares": o["cpu_shares"] or 0, "CpusetCpus": o["cpuset_cpus"] or "",
        "PidsLimit": o["pids_limit"], "ShmSize": o["shm_size"] or 0,
        "Init": True if o["init"] else None, "ReadonlyRootfs": o["read_only"], "Privileged": o["privileged"],
        "CapAdd": list(o["cap_add"]) or None, "CapDrop": list(o["cap_drop"]) or None,
        "SecurityOpt": list(o["security_opt"]) or None, "ExtraHosts": list(o["add_host"]) or None,
        "Dns": list(o["dns"]) or None, "DnsSearch": list(o["dns_search"]) or None,
        "DnsOptions": list(o["dns_option"]) or None, "Tmpfs": tmpfs or None, "Ulimits": ulimits or None,
        "Devices": devices or None, "Sysctls": sysctls or None, "GroupAdd": list(o["group_add"]) or None,
        "IpcMode": o["ipc"] or "", "PidMode": o["pid"] or "", "UTSMode": o["uts"] or "",
        "UsernsMode": o["userns"] or "", "CgroupnsMode": o["cgroupns"] or "",
        "OomKillDisable": o["oom_kill_disable"] or None,
    }
    if o["memory_swap"] is not None:
        hc["MemorySwap"] = -1 if o["memory_swap"] == "-1" else SIZE.convert(o["memory_swap"], None, None)
    if o["restart"]:
        hc["RestartPolicy"] = restart_policy(o["restart"])
    if o["log_driver"] or log_opts:
        hc["LogConfig"] = {"Type": o["log_driver"] or "", "Config": log_opts}
    if o["runtime"]:
        hc["Runtime"] = o["runtime"]
    if o["tty"]:
        from berth.cli.attach import terminal_size

        size = terminal_size()
        if size:  # the container's terminal starts at this size, before the first resize (as docker's CLI)
            hc["ConsoleSize"] = list(size)
    attach = {s.lower() for s in o["attach_streams"]}
    detached = o["detach"]
    body: dict[str, Any] = {
        "Image": image, "Cmd": list(command) or None, "Env": env_list(o["env"], o["env_file"]),
        "Labels": labels, "WorkingDir": o["workdir"] or "", "User": o["user"] or "", "Tty": o["tty"],
        "OpenStdin": o["interactive"], "StdinOnce": o["interactive"] and not detached,
        "AttachStdin": not detached and (o["interactive"] or "stdin" in attach),
        "AttachStdout": not detached and (not attach or "stdout" in attach),
        "AttachStderr": not detached and (not attach or "stderr" in attach),
        "Hostname": o["hostname"] or "", "Domainname": o["domainname"] or "",
        "ExposedPorts": exposed or None, "Volumes": volumes or None,
        "StopSignal": o["stop_signal"], "StopTimeout": o["stop_timeout"], "HostConfig": hc,
    }
    if o["entrypoint"] is not None:
        body["Entrypoint"] = [o["entrypoint"]] if o["entrypoint"] else [""]
    if o["no_healthcheck"]:
        body["Healthcheck"] = {"Test": ["NONE"]}
    elif any(o[k] is not None for k in ("health_cmd", "health_interval", "health_timeout", "health_start_period",
                                         "health_retries")):
        h: dict[str, Any] = {}
        if o["health_cmd"]:
            h["Test"] = ["CMD-SHELL", o["health_cmd"]]
        for key, flag in (("Interval", "health_interval"), ("Timeout", "health_timeout"),
                          ("StartPeriod", "health_start_period")):
            if o[flag] is not None:
                h[key] = _ns(o[flag])
        if o["health_retries"] is not None:
            h["Retries"] = o["health_retries"]
        body["Healthcheck"] = h
    if o["network"] and (o["network_alias"] or o["ip"]):
        ep: dict[str, Any] = {"Aliases": list(o["network_alias"]) or None}
        if o["ip"]:
            ep["IPAMConfig"] = {"IPv4Address": o["ip"]}
        body["NetworkingConfig"] = {"EndpointsConfig": {o["network"]: ep}}
    return body
