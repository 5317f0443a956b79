"""Run ``runc exec --detach`` and outlive it as the exec'd process's parent, exiting with its status.

runc hands a terminal's master over a console socket only when it detaches, and a detached runc
exits as soon as the process runs, so runc never learns (or reports) how the process ended. This
helper makes itself a child subreaper first, so the process, orphaned when runc exits, becomes its
child: it reaps it and exits with the status, as an attached ``runc exec`` would (128+N for a
signal). A runc that fails (no pid file written) is answered with runc's own exit code.

Usage: ``python -I -S execreaper.py PID_FILE RUNC_ARGV...``. Standard library only: it is started
per exec, so it keeps its start-up small (no ``berth`` imports, no site).
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_CHILD_SUBREAPER = 36


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def _reap_until(pid: int) -> int:
    """Reap children (runc's own helpers may be reparented here too) until ``pid`` ended."""
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:  # not ours after all (cannot happen once runc exited): unknown
            return 255
        if got == pid:
            return _exit_code(status)


def main(argv: list[str]) -> int:
    pid_file, runtime_argv = argv[0], argv[1:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        os.write(2, f"execreaper: prctl: {os.strerror(ctypes.get_errno())}\n".encode())
        return 125
    runtime = os.posix_spawnp(runtime_argv[0], runtime_argv, os.environ)
    _, status = os.waitpid(runtime, 0)
    code = _exit_code(status)
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return code or 125  # runc failed before the process existed; berthd reads runc's log
    if code != 0:
        # runc wrote the pid but failed after: the process may run or not; end it rather than
        # leave it behind unreported
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    return _reap_until(pid)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
