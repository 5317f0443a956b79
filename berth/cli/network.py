"""``berth network …``: plain Engine API calls (the daemon's networking lives in berth/network)."""

from __future__ import annotations

from typing import Any

import click

from berth.cli import completion as complete
from berth.cli.common import api, each, filters, split_kv

NETWORK_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv6": "IPV6",
                   "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT"}


@click.group()
def network() -> None:
    """Manage networks."""


@network.command("ls")
@click.option("-f", "--filter", "filter_", multiple=True, help="Provide filter values (e.g. 'driver=bridge')")
@click.option("--format", "fmt", default=None, help="Format output using a custom template")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output")
@click.option("-q", "--quiet", is_flag=True, help="Only display network IDs")
def network_ls(filter_: tuple[str, ...], fmt: str | None, no_trunc: bool, quiet: bool) -> None:
    """List networks."""
    from berth.cli.fmt import headers_for, label_func, write_rows

    nets = api().get("/networks", filters=filters(filter_)) or []
    nets.sort(key=lambda n: n.get("Name", ""))
    rows: list[dict[str, Any]] = []
    for n in nets:
        labels = n.get("Labels") or {}
        rows.append({"ID": n["Id"] if no_trunc else n["Id"][:12], "Name": n.get("Name", ""),
                     "Driver": n.get("Driver", ""), "Scope": n.get("Scope", "local"),
                     "IPv6": str(bool(n.get("EnableIPv6"))).lower(), "Internal": str(bool(n.get("Internal"))).lower(),
                     "Labels": ",".join(f"{k}={v}" for k, v in labels.items()), "CreatedAt": n.get("Created", ""),
                     "Label": label_func(labels)})
    write_rows(rows, fmt, "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}", headers_for(NETWORK_HEADERS), "ID",
               quiet)


network.add_command(network_ls, "list")


@network.command("create")
@click.option("-d", "--driver", default="bridge", help="Driver to manage the Network")
@click.option("--subnet", multiple=True, help="Subnet in CIDR format that represents a network segment")
@click.option("--gateway", multiple=True, help="IPv4 or IPv6 Gateway for the master subnet")
@click.option("--ip-range", multiple=True, help="Allocate container ip from a sub-range")
@click.option("--internal", is_flag=True, help="Restrict external access to the network")
@click.option("--attachable", is_flag=True, help="Enable manual container attachment")
@click.option("--ipv6", is_flag=True, help="Enable or disable IPv6 networking")
@click.option("--label", multiple=True, help="Set metadata on a network")
@click.option("-o", "--opt", multiple=True, help="Set driver specific options")
@click.argument("name")
def network_create(driver: str, subnet: tuple[str, ...], gateway: tuple[str, ...], ip_range: tuple[str, ...],
                   internal: bool, attachable: bool, ipv6: bool, label: tuple[str, ...], opt: tuple[str, ...],
                   name: str) -> None:
    """Create a network."""
    if len(gateway) > len(subnet) or len(ip_range) > len(subnet):
        raise click.BadParameter("every --gateway and --ip-range needs a --subnet", param_hint="'--gateway'")
    configs = []
    for i, s in enumerate(subnet):
        cfg = {"Subnet": s}
        if i < len(gateway):
            cfg["Gateway"] = gateway[i]
        if i < len(ip_range):
            cfg["IPRange"] = ip_range[i]
        configs.append(cfg)
    body: dict[str, Any] = {"Name": name, "Driver": driver, "Internal": internal, "Attachable": attachable,
                            "EnableIPv6": ipv6, "Labels": split_kv(label, "label"),
                            "Options": split_kv(opt, "option"), "CheckDuplicate": True}
    if configs:
        body["IPAM"] = {"Driver": "default", "Config": configs}
    r = api().post("/networks/create", body=body)
    for w in [r.get("Warning")] if r.get("Warning") else []:
        click.echo(f"WARNING: {w}", err=True)
    click.echo(r["Id"])


@network.command("rm")
@click.option("-f", "--force", is_flag=True, help="Do not error if the network does not exist")
@click.argument("names", nargs=-1, required=True, shell_complete=complete.networks)
def network_rm(force: bool, names: tuple[str, ...]) -> None:
    """Remove one or more networks."""
    from berth.cli.client import APIError, q

    c = api()

    def one(n: str) -> None:
        try:
            c.delete(f"/networks/{q(n)}")
        except APIError as e:
            if not (force and e.status == 404):
                raise

    each(names, one)


network.add_command(network_rm, "remove")


@network.command("inspect")
@click.option("-f", "--format", "fmt", default=None, help="Format output using a custom template")
@click.option("-v", "--verbose", is_flag=True, help="Verbose output for diagnostics")
@click.argument("names", nargs=-1, required=True, shell_complete=complete.networks)
def network_inspect(fmt: str | None, verbose: bool, names: tuple[str, ...]) -> None:
    """Display detailed information on one or more networks."""
    from berth.cli.system import inspect_objects

    inspect_objects("network", names, fmt)


@network.command("connect")
@click.option("--alias", multiple=True, help="Add network-scoped alias for the container")
@click.option("--ip", default=None, help="IPv4 address (e.g., 172.30.100.104)")
@click.option("--ip6", default=None, help="IPv6 address (e.g., 2001:db8::33)")
@click.option("--link", multiple=True, help="Add link to another container")
@click.argument("network_name", metavar="NETWORK", shell_complete=complete.networks)
@click.argument("container", shell_complete=complete.containers)
def network_connect(alias: tuple[str, ...], ip: str | None, ip6: str | None, link: tuple[str, ...],
                    network_name: str, container: str) -> None:
    """Connect a container to a network."""
    from berth.cli.client import q

    ep: dict[str, Any] = {"Aliases": list(alias) or None, "Links": list(link) or None}
    if ip or ip6:
        ep["IPAMConfig"] = {"IPv4Address": ip or "", "IPv6Address": ip6 or ""}
    api().post(f"/networks/{q(network_name)}/connect", body={"Container": container, "EndpointConfig": ep})


@network.command("disconnect")
@click.option("-f", "--force", is_flag=True, help="Force the container to disconnect from a network")
@click.argument("network_name", metavar="NETWORK", shell_complete=complete.networks)
@click.argument("container", shell_complete=complete.containers)
def network_disconnect(force: bool, network_name: str, container: str) -> None:
    """Disconnect a container from a network."""
    from berth.cli.client import q

    api().post(f"/networks/{q(network_name)}/disconnect", body={"Container": container, "Force": force})


@network.command("prune")
@click.option("--filter", "filter_", multiple=True, help="Provide filter values (e.g. 'until=<timestamp>')")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
def network_prune(filter_: tuple[str, ...], force: bool) -> None:
    """Remove all unused networks."""
    from berth.cli.system import _confirm

    if not _confirm(force, "WARNING! This will remove all custom networks not used by at least one container."):
        return
    r = api().post("/networks/prune", {"filters": filters(filter_)}) or {}
    if r.get("NetworksDeleted"):
        click.echo("Deleted Networks:\n" + "\n".join(r["NetworksDeleted"]))
