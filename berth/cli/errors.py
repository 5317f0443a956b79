"""Exit codes and error wording as the docker CLI has them; no traceback for an expected error.

125: the CLI or the daemon failed to do what was asked (bad flags, create/start errors in ``run``);
126/127: the container's command cannot be invoked / was not found (from ``run``);
1: other daemon errors (``No such container``), and an unreachable daemon.
"""

from __future__ import annotations

import os
import sys

import click


class CLIError(click.ClickException):
    """An expected failure: the message is printed as is and the process exits with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _usage(e: click.UsageError) -> str:
    ctx = e.ctx
    if ctx is None:
        return ""
    path = ctx.command_path
    return f"\n\nUsage:  {ctx.get_usage().removeprefix('Usage: ').strip()}\n\nRun '{path} --help' for more information"


def usage_message(e: click.UsageError) -> str:
    if isinstance(e, click.NoSuchOption):
        return f"unknown flag: {e.option_name}" + _usage(e)
    if isinstance(e, click.BadOptionUsage):
        return f"{e.message}" + _usage(e)
    if isinstance(e, click.BadParameter) and e.param is not None and isinstance(e.param, click.Option):
        flag = ", ".join(e.param.opts + e.param.secondary_opts)
        return f"invalid argument for \"{flag}\" flag: {e.message}" + _usage(e)
    msg = e.format_message()
    if msg.startswith("No such command"):
        name = msg.split("'")[1] if "'" in msg else msg
        path = e.ctx.command_path if e.ctx else "berth"
        return f"berth: '{name}' is not a {path} command.\nSee '{path} --help'"
    return f"{e.ctx.command_path if e.ctx else 'berth'}: {msg}" + _usage(e)


def run_cli(group: click.Group, argv: list[str] | None) -> int:
    from berth.cli.client import APIError, ConnectError, StreamError
    from berth.cli.fmt import FormatError

    try:
        rv = group.main(args=argv, prog_name="berth", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click.UsageError as e:
        print(usage_message(e), file=sys.stderr)
        return 125
    except CLIError as e:
        if e.message:
            print(e.message, file=sys.stderr)
        return e.code
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.Abort:
        return 130
    except ConnectError as e:
        print(str(e), file=sys.stderr)
        return 1
    except (APIError, StreamError, FormatError) as e:
        print(str(e), file=sys.stderr)
        return 1
    except click.ClickException as e:
        print(f"Error: {e.format_message()}", file=sys.stderr)
        return e.exit_code if e.exit_code not in (0, 2) else 125
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`berth ps | head`): quiet, as a pipeline expects
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        except OSError:
            pass
        return 141
    except OSError as e:
        if os.environ.get("BERTH_DEBUG"):
            raise
        print(f"berth: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""), file=sys.stderr)
        return 1
    except Exception as e:  # an internal bug: one line, the traceback only with -D
        if os.environ.get("BERTH_DEBUG"):
            raise
        print(f"berth: internal error: {type(e).__name__}: {e} (run with -D for details)", file=sys.stderr)
        return 1
