"""The click command tree of ``berth``: global options and the table of (lazily imported) commands.

Commands live in their own modules and are imported only when run (``LazyGroup``), so a command
pays only for what it uses; ``main.py`` runs the hottest ones without importing click at all.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from berth.cli.commands import COMMANDS
from berth.cli.lazy import LazyGroup


class State:
    """Per-invocation options every command can reach: ``ctx.find_object(State)``."""

    def __init__(self, host: str, tls: Any) -> None:
        self.host = host
        self.tls = tls
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from berth.cli.client import Client

            try:
                self._client = Client(self.host, self.tls)
            except ValueError as e:
                raise click.UsageError(str(e)) from e
        return self._client


def _print_version(ctx: click.Context) -> None:
    import berth

    click.echo(f"Berth version {berth.__version__}, API {berth.API_VERSION}")
    ctx.exit(0)


def default_host() -> str:
    return os.environ.get("BERTH_HOST") or os.environ.get("DOCKER_HOST") or "unix:///var/run/berth.sock"


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["--help"]},
             invoke_without_command=False)
@click.option("-H", "--host", default=None, metavar="HOST",
              help="Daemon socket to connect to (BERTH_HOST, DOCKER_HOST, else unix:///var/run/berth.sock)")
@click.option("--tls", is_flag=True, help="Use TLS; implied by --tlsverify")
@click.option("--tlsverify", is_flag=True, help="Use TLS and verify the remote")
@click.option("--tlscacert", default=None, metavar="PATH", help="Trust certs signed only by this CA")
@click.option("--tlscert", default=None, metavar="PATH", help="Path to TLS certificate file")
@click.option("--tlskey", default=None, metavar="PATH", help="Path to TLS key file")
@click.option("-D", "--debug", is_flag=True, help="Enable debug mode (tracebacks on internal errors)")
@click.option("-l", "--log-level", default="info", metavar="LEVEL", help="Set the logging level (accepted)")
@click.option("--config", default=None, metavar="DIR", help="Location of client config files (DOCKER_CONFIG)")
@click.option("-v", "--version", "show_version", is_flag=True, is_eager=True, expose_value=False,
              callback=lambda ctx, p, v: _print_version(ctx) if v else None, help="Print version information and quit")
@click.pass_context
def cli(ctx: click.Context, host: str | None, tls: bool, tlsverify: bool, tlscacert: str | None,
        tlscert: str | None, tlskey: str | None, debug: bool, log_level: str, config: str | None) -> None:
    """Berth: build, ship and run containers (a Docker-compatible CLI)."""
    from berth.cli.client import tls_from_env

    if debug:
        os.environ["BERTH_DEBUG"] = "1"
    if config:
        os.environ["DOCKER_CONFIG"] = config
    host = host or default_host()
    ctx.obj = State(host, tls_from_env(tls, tlsverify, tlscacert, tlscert, tlskey))


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def check(args: tuple[str, ...]) -> None:
    """Verify a stopped daemon's data root: `berth check [--data-root DIR] [--verify-data]`."""
    from berth.daemon.check import main as check_main

    sys.exit(check_main(list(args)))


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def registry(args: tuple[str, ...]) -> None:
    """Berth's registry server: `berth registry serve --addr 127.0.0.1:5000 --root DIR`, `berth registry gc`."""
    from berth.registry.cli import main as registry_main

    sys.exit(registry_main(list(args)))
