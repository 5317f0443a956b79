"""``berth``: the command-line client, with Docker's verbs, flags, output and exit codes.

Start-up time is part of the interface (``berth ps`` should feel like ``docker ps``). Importing
click costs 25-45 ms here, as much as the interpreter's own start, so the hottest read-only commands
(``version``, ``ps``, ``images``) are parsed by ``fast.py`` and run without it when their arguments
are ones it knows; anything else goes through the click tree in ``app.py``.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    import os

    args = sys.argv[1:] if argv is None else argv
    code = None
    if "_BERTH_COMPLETE" not in os.environ:  # click answers completion requests
        from berth.cli.fast import try_fast

        code = try_fast(args)
    if code is None:
        from berth.cli.app import cli
        from berth.cli.errors import run_cli

        code = run_cli(cli, args)
    sys.exit(code)


if __name__ == "__main__":
    main()
