"""Shell completion (click's, for bash and zsh), with container, image, volume and network names
asked of the daemon the command line points at."""

from __future__ import annotations

import os
from typing import Any

import click


def _client(ctx: click.Context) -> Any:
    from berth.cli.client import Client, tls_from_env

    p = ctx.find_root().params
    host = p.get("host") or os.environ.get("BERTH_HOST") or os.environ.get("DOCKER_HOST") \
        or "unix:///var/run/berth.sock"
    return Client(host, tls_from_env(bool(p.get("tls")), bool(p.get("tlsverify")), p.get("tlscacert"),
                                     p.get("tlscert"), p.get("tlskey")))


def _names(ctx: click.Context, fetch: Any, incomplete: str) -> list[str]:
    try:
        names = fetch(_client(ctx))
    except Exception:  # no daemon: no names, never a traceback in the shell
        return []
    return sorted(n for n in set(names) if n.startswith(incomplete))


def containers(ctx: click.Context, param: Any, incomplete: str) -> list[str]:
    return _names(ctx, lambda c: [n.lstrip("/") for x in c.get("/containers/json", all=True)
                                 for n in x.get("Names") or []], incomplete)


def images(ctx: click.Context, param: Any, incomplete: str) -> list[str]:
    return _names(ctx, lambda c: [t for x in c.get("/images/json") for t in x.get("RepoTags") or []
                                  if t != "<none>:<none>"], incomplete)


def volumes(ctx: click.Context, param: Any, incomplete: str) -> list[str]:
    return _names(ctx, lambda c: [v["Name"] for v in c.get("/volumes").get("Volumes") or []], incomplete)


def networks(ctx: click.Context, param: Any, incomplete: str) -> list[str]:
    return _names(ctx, lambda c: [n["Name"] for n in c.get("/networks") or []], incomplete)


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print a shell completion script.

    \b
    bash:  eval "$(berth completion bash)"   (or save it under /etc/bash_completion.d/berth)
    zsh:   eval "$(berth completion zsh)"
    """
    from click.shell_completion import get_completion_class

    from berth.cli.app import cli

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(cli, {}, "berth", "_BERTH_COMPLETE").source())
