"""System commands: version, info, inspect, events, and system df/prune."""

from __future__ import annotations

import sys
from typing import Any

import click

from berth.cli import completion as complete
from berth.cli.common import api, filters
from berth.cli.errors import CLIError


@click.command()
@click.option("-f", "--format", "fmt", default=None, help="Format output using a custom template")
def version(fmt: str | None) -> None:
    """Show the Berth version information."""
    from berth.cli.version import show_version

    code = show_version(api(), fmt)
    if code:
        raise CLIError("", code)


INFO_TEMPLATE = """Client:
 Version:    {{.ClientInfo.Version}}
 Debug Mode: {{.ClientInfo.Debug}}

Server:
 Containers: {{.Containers}}
  Running: {{.ContainersRunning}}
  Paused: {{.ContainersPaused}}
  Stopped: {{.ContainersStopped}}
 Images: {{.Images}}
 Server Version: {{.ServerVersion}}
 Storage Driver: {{.Driver}}
{{- range .DriverStatus}}
  {{index . 0}}: {{index . 1}}{{end}}
 Logging Driver: {{.LoggingDriver}}
 Cgroup Driver: {{.CgroupDriver}}
 Cgroup Version: {{.CgroupVersion}}
 Plugins:
  Volume:{{range .Plugins.Volume}} {{.}}{{end}}
  Network:{{range .Plugins.Network}} {{.}}{{end}}
  Log:{{range .Plugins.Log}} {{.}}{{end}}
 Runtimes:{{range $k, $v := .Runtimes}} {{$k}}{{end}}
 Default Runtime: {{.DefaultRuntime}}
 Security Options:{{range .SecurityOptions}}
  {{.}}{{end}}
 Kernel Version: {{.KernelVersion}}
 Operating System: {{.OperatingSystem}}
 OSType: {{.OSType}}
 Architecture: {{.Architecture}}
 CPUs: {{.NCPU}}
 Total Memory: {{.MemTotalHuman}}
 Name: {{.Name}}
 ID: {{.ID}}
 Berth Root Dir: {{.DockerRootDir}}
 Debug Mode: {{.Debug}}
 Experimental: {{.ExperimentalBuild}}
 Live Restore Enabled: {{.LiveRestoreEnabled}}
"""


@click.command()
@click.option("-f", "--format", "fmt", default=None, help="Format output using a custom template")
def info(fmt: str | None) -> None:
    """Display system-wide information."""
    import os

    import berth
    from berth.cli.fmt import render_one

    data = api().get("/info")
    if fmt:
        data["ClientInfo"] = {"Version": berth.__version__, "Debug": bool(os.environ.get("BERTH_DEBUG"))}
        click.echo(render_one(fmt, data))
        return
    mem = float(data.get("MemTotal") or 0)
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while mem >= 1024 and i < len(units) - 1:
        mem /= 1024
        i += 1
    data["MemTotalHuman"] = f"{mem:.4g}{units[i]}"
    data["ClientInfo"] = {"Version": berth.__version__, "Debug": bool(os.environ.get("BERTH_DEBUG"))}
    data.setdefault("Plugins", {})
    sys.stdout.write(render_one(INFO_TEMPLATE, data))
    for w in data.get("Warnings") or []:
        sys.stderr.write(w + "\n")


INSPECT_PATHS = {"container": "/containers/{}/json", "image": "/images/{}/json", "volume": "/volumes/{}",
                 "network": "/networks/{}"}


def inspect_objects(kind: str | None, names: tuple[str, ...], fmt: str | None, size: bool = False) -> None:
    """Docker's inspect: a JSON array of every object found (or one template line each);
    ``Error: No such object: x`` on stderr for each missing one and exit 1."""
    from berth.cli.client import APIError, q
    from berth.cli.fmt import print_json, render_one

    c = api()
    found: list[Any] = []
    missing: list[str] = []
    kinds = [kind] if kind else ["container", "image", "volume", "network"]
    for n in names:
        obj = None
        for k in kinds:
            try:
                params = {"size": True} if (k == "container" and size) else {}
                obj = c.get(INSPECT_PATHS[k].format(q(n)), **params)
                break
            except APIError as e:
                if e.status not in (404, 400):
                    raise
        if obj is None:
            missing.append(n)
        else:
            found.append(obj)
            if fmt:
                click.echo(render_one(fmt, obj))
    if not fmt:
        print_json(found)
    for n in missing:
        what = {"container": "container", "image": "image", "volume": "volume", "network": "network"}.get(kind or "")
        sys.stderr.write(f"Error: No such {what}: {n}\n" if what else f"Error: No such object: {n}\n")
    if missing:
        raise CLIError("", 1)


@click.command()
@click.option("-f", "--format", "fmt", default=None, help="Format output using the given Go template")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes if the type is container")
@click.option("--type", "type_", type=click.Choice(["container", "image", "volume", "network"]), default=None,
              help="Only inspect objects of the given type")
@click.argument("names", nargs=-1, required=True, metavar="NAME|ID...",
                shell_complete=lambda c, p, i: complete.containers(c, p, i) + complete.images(c, p, i))
def inspect(fmt: str | None, size: bool, type_: str | None, names: tuple[str, ...]) -> None:
    """Return low-level information on Berth objects."""
    inspect_objects(type_, names, fmt, size)


@click.command()
@click.option("-f", "--filter", "filter_", multiple=True, help="Filter output based on conditions provided")
@click.option("--format", "fmt", default=None, help="Format the output using the given Go template")
@click.option("--since", default=None, help="Show all events created since timestamp")
@click.option("--until", default=None, help="Stream events until this timestamp")
def events(filter_: tuple[str, ...], fmt: str | None, since: str | None, until: str | None) -> None:
    """Get real time events from the server."""
    import time

    from berth.cli.containers import _time_param
    from berth.cli.fmt import render_one

    r = api().request("GET", "/events", {"filters": filters(filter_), "since": _time_param(since),
                                         "until": _time_param(until)})
    try:
        for ev in r.iter_json():
            if fmt:
                src = "{{json .}}" if fmt == "json" else fmt
                click.echo(render_one(src, ev))
                continue
            t = ev.get("timeNano") or int(ev.get("time", 0) * 1e9)
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t / 1e9)) + f".{t % 1_000_000_000:09d}" + \
                time.strftime("%z", time.localtime(t / 1e9))
            actor = ev.get("Actor") or {}
            attrs = ", ".join(f"{k}={v}" for k, v in sorted((actor.get("Attributes") or {}).items()))
            line = f"{ts[:-2]}:{ts[-2:]} {ev.get('Type')} {ev.get('Action')} {actor.get('ID', '')}"
            click.echo(line + (f" ({attrs})" if attrs else ""))
    finally:
        r.close()


@click.command()
@click.option("-v", "--verbose", is_flag=True, help="Show detailed information on space usage")
@click.option("--format", "fmt", default=None, help="Format output using a custom template")
def df(verbose: bool, fmt: str | None) -> None:
    """Show docker disk usage."""
    from berth.cli.fmt import headers_for, human_size, write_rows

    d = api().get("/system/df")
    ims = d.get("Images") or []
    cts = d.get("Containers") or []
    vols = d.get("Volumes") or []
    cache = d.get("BuildCache") or []

    def pct(part: float, total: float) -> str:
        return f"{human_size(part)} ({int(part * 100 / total) if total else 0}%)"

    im_size = sum(i.get("Size") or 0 for i in ims)
    im_shared = d.get("LayersSize") or im_size
    im_active = sum(1 for i in ims if (i.get("Containers") or 0) > 0)
    im_unused = sum(i.get("Size") or 0 for i in ims if (i.get("Containers") or 0) <= 0)
    ct_size = sum(c.get("SizeRw") or 0 for c in cts)
    ct_active = sum(1 for c in cts if c.get("State") == "running")
    ct_unused = sum(c.get("SizeRw") or 0 for c in cts if c.get("State") != "running")
    v_size = sum(((v.get("UsageData") or {}).get("Size") or 0) for v in vols if
                 ((v.get("UsageData") or {}).get("Size") or 0) > 0)
    v_active = sum(1 for v in vols if ((v.get("UsageData") or {}).get("RefCount") or 0) > 0)
    v_unused = sum(((v.get("UsageData") or {}).get("Size") or 0) for v in vols
                   if ((v.get("UsageData") or {}).get("RefCount") or 0) == 0 and
                   ((v.get("UsageData") or {}).get("Size") or 0) > 0)
    b_size = sum(b.get("Size") or 0 for b in cache)
    b_unused = sum(b.get("Size") or 0 for b in cache if not b.get("InUse"))
    rows = [
        {"Type": "Images", "TotalCount": str(len(ims)), "Active": str(im_active), "Size": human_size(im_shared),
         "Reclaimable": pct(im_unused, im_shared)},
        {"Type": "Containers", "TotalCount": str(len(cts)), "Active": str(ct_active), "Size": human_size(ct_size),
         "Reclaimable": pct(ct_unused, ct_size)},
        {"Type": "Local Volumes", "TotalCount": str(len(vols)), "Active": str(v_active), "Size": human_size(v_size),
         "Reclaimable": pct(v_unused, v_size)},
        {"Type": "Build Cache", "TotalCount": str(len(cache)), "Active": "0", "Size": human_size(b_size),
         "Reclaimable": human_size(b_unused)},
    ]
    heads = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE"}
    write_rows(rows, fmt, "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
               headers_for(heads))


def _confirm(force: bool, warning: str) -> bool:
    if force:
        return True
    sys.stderr.write(warning + "\nAre you sure you want to continue? [y/N] ")
    sys.stderr.flush()
    ans = sys.stdin.readline().strip().lower()
    return ans in ("y", "yes")


def reclaimed(n: int) -> str:
    from berth.cli.fmt import human_size

    return f"Total reclaimed space: {human_size(n)}"


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused images not just dangling ones")
@click.option("--filter", "filter_", multiple=True, help="Provide filter values (e.g. 'label=<key>=<value>')")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--volumes", is_flag=True, help="Prune anonymous volumes")
def prune(all_: bool, filter_: tuple[str, ...], force: bool, volumes: bool) -> None:
    """Remove unused data."""
    warn = ("WARNING! This will remove:\n  - all stopped containers\n"
            + ("  - all anonymous volumes not used by at least one container\n" if volumes else "")
            + ("  - all images without at least one container associated to them\n" if all_
               else "  - all dangling images\n") + "  - unused build cache\n")
    if not _confirm(force, warn):
        return
    c = api()
    flt = filters(filter_)
    total = 0
    r = c.post("/containers/prune", {"filters": flt}) or {}
    if r.get("ContainersDeleted"):
        click.echo("Deleted Containers:\n" + "\n".join(r["ContainersDeleted"]) + "\n")
    total += r.get("SpaceReclaimed") or 0
    if volumes:
        r = c.post("/volumes/prune", {"filters": flt}) or {}
        if r.get("VolumesDeleted"):
            click.echo("Deleted Volumes:\n" + "\n".join(r["VolumesDeleted"]) + "\n")
        total += r.get("SpaceReclaimed") or 0
    iflt = dict(flt or {})
    iflt["dangling"] = ["false" if all_ else "true"]
    r = c.post("/images/prune", {"filters": iflt}) or {}
    if r.get("ImagesDeleted"):
        click.echo("Deleted Images:")
        for d in r["ImagesDeleted"]:
            for k, v in d.items():
                click.echo(f"{k.lower()}: {v}")
        click.echo("")
    total += r.get("SpaceReclaimed") or 0
    try:
        r = c.post("/build/prune", {"all": all_ or None}) or {}
        total += r.get("SpaceReclaimed") or 0
    except Exception:  # a daemon without a build cache endpoint
        pass
    click.echo(reclaimed(total))


@click.command("info")
@click.option("-f", "--format", "fmt", default=None, help="Format output using a custom template")
@click.pass_context
def system_info(ctx: click.Context, fmt: str | None) -> None:
    """Display system-wide information."""
    ctx.invoke(info, fmt=fmt)
