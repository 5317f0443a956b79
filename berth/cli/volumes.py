"""``berth volume …``: Docker's verbs, plus berth's export/import of a volume's content."""

from __future__ import annotations

import sys
from typing import Any

import click

from berth.cli import completion as complete
from berth.cli.common import api, each, filters, split_kv

VOLUME_HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
                  "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE", "Availability": "AVAILABILITY",
                  "Group": "GROUP"}


@click.group()
def volume() -> None:
    """Manage volumes."""


@volume.command("create")
@click.option("-d", "--driver", default="local", help="Specify volume driver name")
@click.option("--label", multiple=True, help="Set metadata for a volume")
@click.option("-o", "--opt", multiple=True, help="Set driver specific options")
@click.option("--name", "name_opt", default=None, help="Specify volume name")
@click.argument("name", required=False)
def volume_create(driver: str, label: tuple[str, ...], opt: tuple[str, ...], name_opt: str | None,
                  name: str | None) -> None:
    """Create a volume."""
    if name and name_opt and name != name_opt:
        raise click.UsageError("conflicting options: either specify --name or provide positional arg, not both")
    body = {"Name": name or name_opt or "", "Driver": driver, "DriverOpts": split_kv(opt, "option"),
            "Labels": split_kv(label, "label")}
    click.echo(api().post("/volumes/create", body=body)["Name"])


@volume.command("ls")
@click.option("-f", "--filter", "filter_", multiple=True, help="Provide filter values (e.g. 'dangling=true')")
@click.option("--format", "fmt", default=None, help="Format output using a custom template")
@click.option("-q", "--quiet", is_flag=True, help="Only display volume names")
def volume_ls(filter_: tuple[str, ...], fmt: str | None, quiet: bool) -> None:
    """List volumes."""
    from berth.cli.fmt import headers_for, label_func, write_rows

    vols = api().get("/volumes", filters=filters(filter_)).get("Volumes") or []
    vols.sort(key=lambda v: v["Name"])
    rows: list[dict[str, Any]] = []
    for v in vols:
        labels = v.get("Labels") or {}
        rows.append({"Name": v["Name"], "Driver": v.get("Driver", ""), "Scope": v.get("Scope", "local"),
                     "Mountpoint": v.get("Mountpoint", ""), "Labels": ",".join(f"{k}={x}" for k, x in labels.items()),
                     "Links": "N/A", "Size": "N/A", "Availability": "N/A", "Group": "N/A",
                     "Label": label_func(labels)})
    write_rows(rows, fmt, "table {{.Driver}}\t{{.Name}}", headers_for(VOLUME_HEADERS), "Name", quiet)


volume.add_command(volume_ls, "list")


@volume.command("inspect")
@click.option("-f", "--format", "fmt", default=None, help="Format output using a custom template")
@click.argument("names", nargs=-1, required=True, shell_complete=complete.volumes)
def volume_inspect(fmt: str | None, names: tuple[str, ...]) -> None:
    """Display detailed information on one or more volumes."""
    from berth.cli.system import inspect_objects

    inspect_objects("volume", names, fmt)


@volume.command("rm")
@click.option("-f", "--force", is_flag=True, help="Force the removal of one or more volumes")
@click.argument("names", nargs=-1, required=True, shell_complete=complete.volumes)
def volume_rm(force: bool, names: tuple[str, ...]) -> None:
    """Remove one or more volumes."""
    from berth.cli.client import q

    c = api()
    each(names, lambda n: c.delete(f"/volumes/{q(n)}", force=force or None))


volume.add_command(volume_rm, "remove")


@volume.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused volumes, not just anonymous ones")
@click.option("--filter", "filter_", multiple=True, help="Provide filter values (e.g. 'label=<label>')")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
def volume_prune(all_: bool, filter_: tuple[str, ...], force: bool) -> None:
    """Remove unused local volumes."""
    from berth.cli.system import _confirm, reclaimed

    if not _confirm(force, "WARNING! This will remove " + ("all local volumes not used by at least one container."
                                                           if all_ else "anonymous local volumes not used by at "
                                                           "least one container.")):
        return
    flt = dict(filters(filter_) or {})
    if all_:
        flt["all"] = ["true"]
    r = api().post("/volumes/prune", {"filters": flt or None}) or {}
    if r.get("VolumesDeleted"):
        click.echo("Deleted Volumes:\n" + "\n".join(r["VolumesDeleted"]) + "\n")
    click.echo(reclaimed(r.get("SpaceReclaimed") or 0))


@volume.command("export")
@click.argument("name")
@click.option("-o", "--output", default=None, help="Write to a file instead of stdout")
def volume_export(name: str, output: str | None) -> None:
    """Write a tar of the volume's content (containers using it are paused meanwhile)."""
    from berth.cli.client import q
    from berth.cli.containers import stream_to

    stream_to(api().request("GET", f"/volumes/{q(name)}/export"), None if output in (None, "-") else output)


@volume.command("import")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
def volume_import(name: str, path: str) -> None:
    """Replace the volume's content with a tar's (the volume is created if missing)."""
    from berth.cli.client import q
    from berth.cli.images import _file_chunks

    f = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    try:
        r = api().request("PUT", f"/volumes/{q(name)}/import", data=_file_chunks(f),
                          headers={"Content-Type": "application/x-tar"})
        r.read()
        r.close()
    finally:
        if path != "-":
            f.close()
    click.echo(name)
