"""The management-command forms: ``berth container …``, ``berth image …``, ``berth system …``."""

from __future__ import annotations

import click

from berth.cli.lazy import LazyGroup

C = "berth.cli.containers:"
CONTAINER = {
    "attach": ("berth.cli.attach:attach", "Attach local standard streams to a running container"),
    "commit": (C + "commit", "Create a new image from a container's changes"),
    "cp": ("berth.cli.cp:cp", "Copy files/folders between a container and the local filesystem"),
    "create": ("berth.cli.run:create", "Create a new container"),
    "diff": (C + "diff", "Inspect changes to files or directories on a container's filesystem"),
    "exec": ("berth.cli.run:exec_", "Execute a command in a running container"),
    "export": (C + "export", "Export a container's filesystem as a tar archive"),
    "inspect": ("berth.cli.groups:container_inspect", "Display detailed information on one or more containers"),
    "kill": (C + "kill", "Kill one or more running containers"),
    "logs": (C + "logs", "Fetch the logs of a container"),
    "ls": (C + "ps", "List containers"),
    "list": (C + "ps", "List containers"),
    "ps": (C + "ps", "List containers"),
    "pause": (C + "pause", "Pause all processes within one or more containers"),
    "port": (C + "port", "List port mappings or a specific mapping for the container"),
    "prune": ("berth.cli.groups:container_prune", "Remove all stopped containers"),
    "rename": (C + "rename", "Rename a container"),
    "restart": (C + "restart", "Restart one or more containers"),
    "rm": (C + "rm", "Remove one or more containers"),
    "run": ("berth.cli.run:run", "Create and run a new container from an image"),
    "start": ("berth.cli.run:start", "Start one or more stopped containers"),
    "stats": (C + "stats", "Display a live stream of container(s) resource usage statistics"),
    "stop": (C + "stop", "Stop one or more running containers"),
    "top": (C + "top", "Display the running processes of a container"),
    "unpause": (C + "unpause", "Unpause all processes within one or more containers"),
    "update": (C + "update", "Update configuration of one or more containers"),
    "wait": (C + "wait", "Block until one or more containers stop, then print their exit codes"),
}
IM = "berth.cli.images:"
IMAGE = {
    "build": ("berth.cli.build:build", "Build an image from a Dockerfile"),
    "history": (IM + "history", "Show the history of an image"),
    "import": (IM + "import_", "Import the contents from a tarball to create a filesystem image"),
    "inspect": ("berth.cli.groups:image_inspect", "Display detailed information on one or more images"),
    "load": (IM + "load", "Load an image from a tar archive or STDIN"),
    "ls": (IM + "images", "List images"),
    "list": (IM + "images", "List images"),
    "prune": ("berth.cli.groups:image_prune", "Remove unused images"),
    "pull": (IM + "pull", "Download an image from a registry"),
    "push": (IM + "push", "Upload an image to a registry"),
    "rm": (IM + "rmi", "Remove one or more images"),
    "save": (IM + "save", "Save one or more images to a tar archive (streamed to STDOUT by default)"),
    "tag": (IM + "tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
}
SYSTEM = {
    "df": ("berth.cli.system:df", "Show disk usage"),
    "events": ("berth.cli.system:events", "Get real time events from the server"),
    "info": ("berth.cli.system:system_info", "Display system-wide information"),
    "prune": ("berth.cli.system:prune", "Remove unused data"),
}


@click.group(cls=LazyGroup, lazy=CONTAINER)
def container() -> None:
    """Manage containers."""


@click.group(cls=LazyGroup, lazy=IMAGE)
def image() -> None:
    """Manage images."""


@click.group(cls=LazyGroup, lazy=SYSTEM)
def system() -> None:
    """Manage Berth."""


def _typed_inspect(kind: str) -> click.Command:
    @click.command("inspect")
    @click.option("-f", "--format", "fmt", default=None, help="Format output using a custom template")
    @click.option("-s", "--size", is_flag=True, help="Display total file sizes")
    @click.argument("names", nargs=-1, required=True)
    def cmd(fmt: str | None, size: bool, names: tuple[str, ...]) -> None:
        from berth.cli.system import inspect_objects

        inspect_objects(kind, names, fmt, size)

    cmd.help = f"Display detailed information on one or more {kind}s."
    return cmd


container_inspect = _typed_inspect("container")
image_inspect = _typed_inspect("image")


@click.command("prune")
@click.option("--filter", "filter_", multiple=True, help="Provide filter values (e.g. 'until=<timestamp>')")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
def container_prune(filter_: tuple[str, ...], force: bool) -> None:
    """Remove all stopped containers."""
    from berth.cli.common import api, filters
    from berth.cli.system import _confirm, reclaimed

    if not _confirm(force, "WARNING! This will remove all stopped containers."):
        return
    r = api().post("/containers/prune", {"filters": filters(filter_)}) or {}
    if r.get("ContainersDeleted"):
        click.echo("Deleted Containers:\n" + "\n".join(r["ContainersDeleted"]) + "\n")
    click.echo(reclaimed(r.get("SpaceReclaimed") or 0))


@click.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused images, not just dangling ones")
@click.option("--filter", "filter_", multiple=True, help="Provide filter values (e.g. 'until=<timestamp>')")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
def image_prune(all_: bool, filter_: tuple[str, ...], force: bool) -> None:
    """Remove unused images."""
    from berth.cli.common import api, filters
    from berth.cli.system import _confirm, reclaimed

    warn = ("WARNING! This will remove all images without at least one container associated to them." if all_
            else "WARNING! This will remove all dangling images.")
    if not _confirm(force, warn):
        return
    flt = dict(filters(filter_) or {})
    flt["dangling"] = ["false" if all_ else "true"]
    r = api().post("/images/prune", {"filters": flt}) or {}
    if r.get("ImagesDeleted"):
        click.echo("Deleted Images:")
        for d in r["ImagesDeleted"]:
            for k, v in d.items():
                click.echo(f"{k.lower()}: {v}")
        click.echo("")
    click.echo(reclaimed(r.get("SpaceReclaimed") or 0))
