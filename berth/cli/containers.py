"""Container commands other than run/create/start/exec: listing, lifecycle, logs, inspection."""

from __future__ import annotations

import sys
from typing import Any

import click

from berth.cli import completion as complete
from berth.cli.common import DURATION, SIZE, api, each, filters
from berth.cli.errors import CLIError


@click.command("ps")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running)")
@click.option("-f", "--filter", "filter_", multiple=True, help="Filter output based on conditions provided")
@click.option("--format", "fmt", default=None, help="Format output using a custom template")
@click.option("-n", "--last", default=-1, type=int, help="Show n last created containers (includes all states)")
@click.option("-l", "--latest", is_flag=True, help="Show the latest created container (includes all states)")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes")
def ps(all_: bool, filter_: tuple[str, ...], fmt: str | None, last: int, latest: bool, no_trunc: bool,
       quiet: bool, size: bool) -> None:
    """List containers."""
    from berth.cli.rows import list_containers

    list_containers(api(), all_, filters(filter_), fmt, last, latest, no_trunc, quiet, size)


def _names(cmd: Any) -> Any:
    return click.argument("containers", nargs=-1, required=True, metavar="CONTAINER...",
                          shell_complete=complete.containers)(cmd)


@click.command()
@click.option("-s", "--signal", "sig", default=None, help="Signal to send to the container")
@click.option("-t", "--time", "timeout", type=int, default=None, help="Seconds to wait before killing the container")
@_names
def stop(sig: str | None, timeout: int | None, containers: tuple[str, ...]) -> None:
    """Stop one or more running containers."""
    from berth.cli.client import q

    c = api()
    each(containers, lambda n: c.post(f"/containers/{q(n)}/stop", {"t": timeout, "signal": sig}))


@click.command()
@click.option("-s", "--signal", "sig", default=None, help="Signal to send to the container")
@click.option("-t", "--time", "timeout", type=int, default=None, help="Seconds to wait before killing the container")
@_names
def restart(sig: str | None, timeout: int | None, containers: tuple[str, ...]) -> None:
    """Restart one or more containers."""
    from berth.cli.client import q

    c = api()
    each(containers, lambda n: c.post(f"/containers/{q(n)}/restart", {"t": timeout, "signal": sig}))


@click.command()
@click.option("-s", "--signal", "sig", default=None, help="Signal to send to the container")
@_names
def kill(sig: str | None, containers: tuple[str, ...]) -> None:
    """Kill one or more running containers."""
    from berth.cli.client import q

    c = api()
    each(containers, lambda n: c.post(f"/containers/{q(n)}/kill", {"signal": sig}))


@click.command()
@_names
def pause(containers: tuple[str, ...]) -> None:
    """Pause all processes within one or more containers."""
    from berth.cli.client import q

    c = api()
    each(containers, lambda n: c.post(f"/containers/{q(n)}/pause"))


@click.command()
@_names
def unpause(containers: tuple[str, ...]) -> None:
    """Unpause all processes within one or more containers."""
    from berth.cli.client import q

    c = api()
    each(containers, lambda n: c.post(f"/containers/{q(n)}/unpause"))


@click.command()
@click.option("-f", "--force", is_flag=True, help="Force the removal of a running container (uses SIGKILL)")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes associated with the container")
@click.option("-l", "--link", is_flag=True, help="Remove the specified link")
@_names
def rm(force: bool, volumes: bool, link: bool, containers: tuple[str, ...]) -> None:
    """Remove one or more containers."""
    from berth.cli.client import q

    c = api()
    each(containers, lambda n: c.delete(f"/containers/{q(n)}", force=force or None, v=volumes or None,
                                        link=link or None))


def _time_param(v: str | None) -> str | None:
    """``--since``/``--until``: a unix time, an RFC 3339 date, or a Go duration back from now."""
    if not v:
        return None
    import time

    from berth.cli.fmt import parse_iso

    try:
        return str(float(v))
    except ValueError:
        pass
    try:
        return str(int(time.time() - DURATION.convert(v, None, None)))
    except click.BadParameter:
        pass
    try:
        return str(int(parse_iso(v if "T" in v else v + "T00:00:00Z")))
    except ValueError as e:
        raise click.BadParameter(f"invalid time {v!r}") from e


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Follow log output")
@click.option("--since", default=None, help="Show logs since timestamp or relative (e.g. 42m)")
@click.option("--until", default=None, help="Show logs before a timestamp or relative (e.g. 42m)")
@click.option("-n", "--tail", default="all", help='Number of lines to show from the end of the logs')
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps")
@click.option("--details", is_flag=True, help="Show extra details provided to logs")
@click.argument("container", shell_complete=complete.containers)
def logs(follow: bool, since: str | None, until: str | None, tail: str, timestamps: bool, details: bool,
         container: str) -> None:
    """Fetch the logs of a container."""
    from berth.cli.client import q
    from berth.cli.streams import demux

    if tail != "all" and not tail.lstrip("-").isdigit():
        raise click.BadParameter(f"invalid tail value {tail!r}", param_hint="'-n' / '--tail'")
    c = api()
    info = c.get(f"/containers/{q(container)}/json")
    r = c.request("GET", f"/containers/{q(container)}/logs",
                  {"stdout": True, "stderr": True, "follow": follow, "timestamps": timestamps, "tail": tail,
                   "since": _time_param(since), "until": _time_param(until), "details": details or None})
    try:
        if (info.get("Config") or {}).get("Tty"):
            for part in r.iter_raw():
                sys.stdout.buffer.write(part)
                sys.stdout.buffer.flush()
            return
        for stream, data in demux(r.iter_raw()):
            w = sys.stderr.buffer if stream == 2 else sys.stdout.buffer
            w.write(data)
            w.flush()
    finally:
        r.close()


@click.command()
@click.argument("container", shell_complete=complete.containers)
@click.argument("ps_args", nargs=-1)
def top(container: str, ps_args: tuple[str, ...]) -> None:
    """Display the running processes of a container."""
    from berth.cli.client import q
    from berth.cli.fmt import align

    r = api().get(f"/containers/{q(container)}/top", ps_args=" ".join(ps_args) or None)
    align(["\t".join(r.get("Titles") or [])] + ["\t".join(p) for p in r.get("Processes") or []])


def _stats_row(name: str, s: dict[str, Any]) -> dict[str, Any]:
    from berth.cli.fmt import human_size

    cpu = s.get("cpu_stats") or {}
    pre = s.get("precpu_stats") or {}
    cd = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    sd = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    ncpu = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    cpu_pct = cd / sd * ncpu * 100.0 if sd > 0 and cd > 0 else 0.0
    mem = s.get("memory_stats") or {}
    usage = (mem.get("usage") or 0) - ((mem.get("stats") or {}).get("inactive_file") or 0)
    limit = mem.get("limit") or 0
    rx = sum(n.get("rx_bytes", 0) for n in (s.get("networks") or {}).values())
    tx = sum(n.get("tx_bytes", 0) for n in (s.get("networks") or {}).values())
    rd = wr = 0
    for e in (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        if e.get("op", "").lower() == "read":
            rd += e.get("value", 0)
        elif e.get("op", "").lower() == "write":
            wr += e.get("value", 0)

    def binsize(n: float) -> str:
        units = ("B", "KiB", "MiB", "GiB", "TiB")
        i = 0
        while n >= 1024 and i < len(units) - 1:
            n /= 1024
            i += 1
        return f"{n:.4g}{units[i]}"

    return {"Container": name, "ID": (s.get("id") or name)[:12], "Name": (s.get("name") or "").lstrip("/"),
            "CPUPerc": f"{cpu_pct:.2f}%", "MemUsage": f"{binsize(usage)} / {binsize(limit)}",
            "MemPerc": f"{usage / limit * 100:.2f}%" if limit else "0.00%",
            "NetIO": f"{human_size(rx)} / {human_size(tx)}", "BlockIO": f"{human_size(rd)} / {human_size(wr)}",
            "PIDs": str((s.get("pids_stats") or {}).get("current", 0))}


STATS_HEADERS = {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
                 "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
                 "PIDs": "PIDS"}


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running)")
@click.option("--format", "fmt", default=None, help="Format output using a custom template")
@click.option("--no-stream", is_flag=True, help="Disable streaming stats and only pull the first result")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output")
@click.argument("containers", nargs=-1)
def stats(all_: bool, fmt: str | None, no_stream: bool, no_trunc: bool, containers: tuple[str, ...]) -> None:
    """Display a live stream of container(s) resource usage statistics."""
    import time

    from berth.cli.client import q
    from berth.cli.fmt import write_rows

    c = api()
    names = list(containers) or [x["Id"] for x in c.get("/containers/json", all=all_ or None)]
    default = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
    tty = sys.stdout.isatty()
    while True:
        rows = [_stats_row(n, c.get(f"/containers/{q(n)}/stats", stream=False)) for n in names]
        if tty and not no_stream:
            sys.stdout.write("\x1b[2J\x1b[H")
        write_rows(rows, fmt, default, STATS_HEADERS)
        sys.stdout.flush()
        if no_stream:
            return
        time.sleep(1)


@click.command()
@click.argument("container", shell_complete=complete.containers)
@click.argument("private_port", required=False)
def port(container: str, private_port: str | None) -> None:
    """List port mappings or a specific mapping for the container."""
    from berth.cli.client import q

    info = api().get(f"/containers/{q(container)}/json")
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    want = None
    if private_port:
        want = private_port if "/" in private_port else private_port + "/tcp"
    found = False
    for key in sorted(ports, key=lambda k: (int(k.split("/")[0]) if k.split("/")[0].isdigit() else 0, k)):
        if want and key != want:
            continue
        for b in ports[key] or []:
            ip = b.get("HostIp") or "0.0.0.0"
            host = f"[{ip}]" if ":" in ip else ip
            click.echo(f"{host}:{b.get('HostPort')}" if want else f"{key} -> {host}:{b.get('HostPort')}")
            found = True
    if want and not found:
        raise CLIError(f"Error: No public port '{want}' published for {container}", 1)


@click.command()
@click.argument("container", shell_complete=complete.containers)
@click.argument("new_name")
def rename(container: str, new_name: str) -> None:
    """Rename a container."""
    from berth.cli.client import q

    api().post(f"/containers/{q(container)}/rename", {"name": new_name})


@click.command()
@_names
def wait(containers: tuple[str, ...]) -> None:
    """Block until one or more containers stop, then print their exit codes."""
    from berth.cli.client import q

    c = api()
    each(containers, lambda n: click.echo(c.post(f"/containers/{q(n)}/wait").get("StatusCode")), echo=False)


@click.command()
@click.argument("container", shell_complete=complete.containers)
def diff(container: str) -> None:
    """Inspect changes to files or directories on a container's filesystem."""
    from berth.cli.client import q

    for ch in api().get(f"/containers/{q(container)}/changes") or []:
        click.echo(f"{'CAD'[ch['Kind']] if ch['Kind'] in (0, 1, 2) else '?'} {ch['Path']}")


@click.command()
@click.option("-a", "--author", default=None, help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
@click.option("-c", "--change", multiple=True, help="Apply Dockerfile instruction to the created image")
@click.option("-m", "--message", default=None, help="Commit message")
@click.option("-p", "--pause", "pause_", default=True, type=click.BOOL, is_flag=False, flag_value=True,
              help="Pause container during commit (default true)")
@click.argument("container", shell_complete=complete.containers)
@click.argument("repository", required=False)
def commit(author: str | None, change: tuple[str, ...], message: str | None, pause_: bool,
           container: str, repository: str | None) -> None:
    """Create a new image from a container's changes."""
    repo = tag = None
    if repository:
        from berth.cli.images import split_ref

        repo, tag = split_ref(repository)
    params: dict[str, Any] = {"container": container, "repo": repo, "tag": tag, "author": author,
                              "comment": message, "pause": pause_}
    if change:
        params["changes"] = "\n".join(change)
    r = api().post("/commit", params)
    click.echo(r["Id"])


def _to_file_or_stdout(output: str | None) -> Any:
    if output:
        return open(output, "wb")  # noqa: SIM115
    if sys.stdout.isatty():
        raise CLIError("cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    return sys.stdout.buffer


def stream_to(resp: Any, output: str | None) -> None:
    out = _to_file_or_stdout(output)
    try:
        for part in resp.iter_raw():
            out.write(part)
        out.flush()
    finally:
        resp.close()
        if out is not sys.stdout.buffer:
            out.close()


@click.command()
@click.option("-o", "--output", default=None, help="Write to a file, instead of STDOUT")
@click.argument("container", shell_complete=complete.containers)
def export(output: str | None, container: str) -> None:
    """Export a container's filesystem as a tar archive."""
    from berth.cli.client import q

    if not output and sys.stdout.isatty():
        raise CLIError("cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    stream_to(api().request("GET", f"/containers/{q(container)}/export"), output)


@click.command()
@click.option("--cpus", type=float, default=None, help="Number of CPUs")
@click.option("--cpu-shares", "-c", type=int, default=None, help="CPU shares (relative weight)")
@click.option("--cpuset-cpus", default=None, help="CPUs in which to allow execution (0-3, 0,1)")
@click.option("--cpuset-mems", default=None, help="MEMs in which to allow execution (0-3, 0,1)")
@click.option("-m", "--memory", type=SIZE, default=None, help="Memory limit")
@click.option("--memory-reservation", type=SIZE, default=None, help="Memory soft limit")
@click.option("--memory-swap", default=None, help="Swap limit equal to memory plus swap: -1 to enable unlimited swap")
@click.option("--pids-limit", type=int, default=None, help="Tune container pids limit (set -1 for unlimited)")
@click.option("--restart", default=None, help="Restart policy to apply when a container exits")
@click.option("--blkio-weight", type=int, default=None, help="Block IO (relative weight)")
@_names
def update(cpus: float | None, cpu_shares: int | None, cpuset_cpus: str | None, cpuset_mems: str | None,
           memory: int | None, memory_reservation: int | None, memory_swap: str | None, pids_limit: int | None,
           restart: str | None, blkio_weight: int | None, containers: tuple[str, ...]) -> None:
    """Update configuration of one or more containers."""
    from berth.cli.client import q
    from berth.cli.runopts import restart_policy

    body: dict[str, Any] = {}
    if cpus is not None:
        body["NanoCpus"] = int(cpus * 1e9)
    if cpu_shares is not None:
        body["CpuShares"] = cpu_shares
    if cpuset_cpus is not None:
        body["CpusetCpus"] = cpuset_cpus
    if cpuset_mems is not None:
        body["CpusetMems"] = cpuset_mems
    if memory is not None:
        body["Memory"] = memory
    if memory_reservation is not None:
        body["MemoryReservation"] = memory_reservation
    if memory_swap is not None:
        body["MemorySwap"] = -1 if memory_swap == "-1" else SIZE.convert(memory_swap, None, None)
    if pids_limit is not None:
        body["PidsLimit"] = pids_limit
    if blkio_weight is not None:
        body["BlkioWeight"] = blkio_weight
    if restart is not None:
        body["RestartPolicy"] = restart_policy(restart)
    c = api()
    each(containers, lambda n: c.post(f"/containers/{q(n)}/update", body=body))
