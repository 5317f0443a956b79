"""A click group whose commands are imported only when they run (or when completion needs them)."""

from __future__ import annotations

import importlib
from typing import Any

import click


class LazyGroup(click.Group):
    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            modname, attr = self.lazy[cmd_name][0].split(":")
            cmd = getattr(importlib.import_module(modname), attr)
            if cmd.name != cmd_name:  # the same command object serves `ps` and `container ls`
                cmd = _renamed(cmd, cmd_name)
            self.commands[cmd_name] = cmd
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The list from the stored short help: ``berth --help`` imports no command module."""
        rows = [(name, self.lazy[name][1] if name in self.lazy else (self.commands[name].get_short_help_str()))
                for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _renamed(cmd: click.Command, name: str) -> click.Command:
    import copy

    c = copy.copy(cmd)
    c.name = name
    return c
