"""``berth``: the command-line client. It speaks the Engine API through the Docker SDK.

Imports of the SDK and rich happen inside commands, so ``berth --help`` starts fast.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

DEFAULT_HOST = "unix:///var/run/berth.sock"


def _client(ctx: click.Context) -> Any:
    import docker

    host = ctx.obj["host"]
    try:
        return docker.DockerClient(base_url=host, version="1.45", timeout=None)
    except docker.errors.DockerException as e:
        raise click.ClickException(f"cannot connect to berthd at {host}: {e}") from e


def _fail(e: Exception) -> None:
    import docker

    if isinstance(e, docker.errors.APIError):
        raise click.ClickException(e.explanation or str(e)) from e
    raise click.ClickException(str(e)) from e


@click.group()
@click.option("-H", "--host", default=lambda: os.environ.get("BERTH_HOST") or os.environ.get("DOCKER_HOST")
              or DEFAULT_HOST, help="daemon socket (default unix:///var/run/berth.sock)")
@click.pass_context
def cli(ctx: click.Context, host: str) -> None:
    """Berth: build, ship and run containers."""
    ctx.obj = {"host": host}


@cli.command()
@click.pass_context
def version(ctx: click.Context) -> None:
    """Show client and daemon versions."""
    import berth

    click.echo(f"Client: berth {berth.__version__} (API {berth.API_VERSION})")
    try:
        v = _client(ctx).version()
    except Exception as e:
        _fail(e)
    click.echo(f"Server: {v.get('Platform', {}).get('Name', '?')} {v['Version']} (API {v['ApiVersion']}, "
               f"{v['Os']}/{v['Arch']}, kernel {v['KernelVersion']})")


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}TB"


@cli.command()
@click.option("-a", "--all", "all_", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
@click.pass_context
def images(ctx: click.Context, all_: bool, quiet: bool) -> None:
    """List images."""
    try:
        items = _client(ctx).api.images(all=all_)
    except Exception as e:
        _fail(e)
    if quiet:
        for im in items:
            click.echo(im["Id"].split(":", 1)[1][:12])
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(box=None, header_style="bold")
    for col in ("REPOSITORY", "TAG", "IMAGE ID", "SIZE"):
        t.add_column(col)
    for im in items:
        short = im["Id"].split(":", 1)[1][:12]
        for rt in im.get("RepoTags") or ["<none>:<none>"]:
            repo, _, tag = rt.rpartition(":")
            t.add_row(repo, tag, short, _size(im["Size"]))
    Console().print(t)


@cli.command()
@click.option("-i", "--input", "path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def load(ctx: click.Context, path: str) -> None:
    """Load images from a docker-save tarball."""
    try:
        with open(path, "rb") as f:
            for chunk in _client(ctx).api.load_image(f):
                if "stream" in chunk:
                    click.echo(chunk["stream"], nl=False)
                if "error" in chunk:
                    raise click.ClickException(chunk["error"])
    except click.ClickException:
        raise
    except Exception as e:
        _fail(e)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--rm", is_flag=True, help="remove the container when it exits")
@click.option("-d", "--detach", is_flag=True)
@click.option("--name", default=None)
@click.option("-e", "--env", multiple=True)
@click.option("-w", "--workdir", default=None)
@click.option("-u", "--user", default=None)
@click.option("--entrypoint", default=None)
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, rm: bool, detach: bool, name: str | None, env: tuple[str, ...], workdir: str | None,
        user: str | None, entrypoint: str | None, image: str, command: tuple[str, ...]) -> None:
    """Run a command in a new container."""
    api = _client(ctx).api
    try:
        # --rm of a detached container is the daemon's job; attached, we remove it ourselves after
        # reading its exit code (the daemon may otherwise remove it before we ask)
        hc = api.create_host_config(auto_remove=rm and detach)
        c = api.create_container(image, list(command) or None, name=name, environment=list(env), working_dir=workdir,
                                 user=user, entrypoint=[entrypoint] if entrypoint else None, host_config=hc,
                                 detach=detach)
        cid = c["Id"]
        if detach:
            api.start(cid)
            click.echo(cid)
            return
        stream = api.attach(cid, stdout=True, stderr=True, stream=True, demux=True)
        api.start(cid)
        for out, err in stream:
            if out:
                sys.stdout.buffer.write(out)
                sys.stdout.buffer.flush()
            if err:
                sys.stderr.buffer.write(err)
                sys.stderr.buffer.flush()
        code = api.wait(cid, condition="not-running")["StatusCode"]
        if rm:
            api.remove_container(cid, v=True, force=True)
    except Exception as e:
        _fail(e)
    sys.exit(code)


@cli.command()
@click.option("-a", "--all", "all_", is_flag=True)
@click.pass_context
def ps(ctx: click.Context, all_: bool) -> None:
    """List containers."""
    try:
        items = _client(ctx).api.containers(all=all_)
    except Exception as e:
        _fail(e)
    from rich.console import Console
    from rich.table import Table

    t = Table(box=None, header_style="bold")
    for col in ("CONTAINER ID", "IMAGE", "COMMAND", "STATUS", "NAMES"):
        t.add_column(col)
    for c in items:
        t.add_row(c["Id"][:12], c["Image"], c["Command"][:30], c["Status"], ",".join(n.lstrip("/") for n in c["Names"]))
    Console().print(t)


@cli.command()
@click.option("-f", "--force", is_flag=True)
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, force: bool, containers: tuple[str, ...]) -> None:
    """Remove containers."""
    api = _client(ctx).api
    for c in containers:
        try:
            api.remove_container(c, force=force)
            click.echo(c)
        except Exception as e:
            _fail(e)


@cli.command()
@click.option("-f", "--force", is_flag=True)
@click.argument("images", nargs=-1, required=True)
@click.pass_context
def rmi(ctx: click.Context, force: bool, images: tuple[str, ...]) -> None:
    """Remove images."""
    api = _client(ctx).api
    for im in images:
        try:
            for item in api.remove_image(im, force=force):
                for k, v in item.items():
                    click.echo(f"{k}: {v}")
        except Exception as e:
            _fail(e)


@cli.command()
@click.option("-f", "--follow", is_flag=True)
@click.option("--tail", default="all")
@click.argument("container")
@click.pass_context
def logs(ctx: click.Context, follow: bool, tail: str, container: str) -> None:
    """Show a container's output."""
    try:
        api = _client(ctx).api
        for chunk in api.logs(container, stream=True, follow=follow, tail=tail if tail == "all" else int(tail)):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
    except Exception as e:
        _fail(e)


@cli.group()
def volume() -> None:
    """Manage volumes (including export and import of their content)."""


@volume.command("export")
@click.argument("name")
@click.option("-o", "--output", default="-", help="write to a file instead of stdout")
@click.pass_context
def volume_export(ctx: click.Context, name: str, output: str) -> None:
    """Write a tar of the volume's content (containers using it are paused meanwhile)."""
    api = _client(ctx).api
    try:
        resp = api._get(api._url("/volumes/{0}/export", name), stream=True)
        api._raise_for_status(resp)
        out = sys.stdout.buffer if output == "-" else open(output, "wb")  # noqa: SIM115
        try:
            for chunk in resp.iter_content(1 << 20):
                out.write(chunk)
        finally:
            if out is not sys.stdout.buffer:
                out.close()
    except Exception as e:
        _fail(e)


@volume.command("import")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.pass_context
def volume_import(ctx: click.Context, name: str, path: str) -> None:
    """Replace the volume's content with a tar's (the volume is created if missing)."""
    api = _client(ctx).api
    try:
        data = sys.stdin.buffer.read() if path == "-" else open(path, "rb")  # noqa: SIM115
        try:
            resp = api._put(api._url("/volumes/{0}/import", name), data=data,
                            headers={"Content-Type": "application/x-tar"})
        finally:
            if not isinstance(data, bytes):
                data.close()
        api._raise_for_status(resp)
        click.echo(name)
    except Exception as e:
        _fail(e)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                               "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def check(args: tuple[str, ...]) -> None:
    """Verify a stopped daemon's data root: `berth check [--data-root DIR] [--verify-data]`."""
    from berth.daemon.check import main as check_main

    sys.exit(check_main(list(args)))


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                               "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def registry(args: tuple[str, ...]) -> None:
    """Berth's registry server: `berth registry serve --addr 127.0.0.1:5000 --root DIR`, `berth registry gc`."""
    from berth.registry.cli import main as registry_main

    sys.exit(registry_main(list(args)))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
