"""``berth cp``: files between a container and the host through the archive endpoints.

What comes out of a container is hostile: it is extracted with tarfile's ``data`` filter (no
absolute paths, no ``..``, no links leaving the destination, no device nodes, no setuid bits).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tarfile
import tempfile
from typing import Any

import click

from berth.cli.common import api
from berth.cli.errors import CLIError


def _split(arg: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` or a local path (a local path with ':' must start with / or .)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    c, _, p = arg.partition(":")
    return c, p


def _stat(c: Any, container: str, path: str) -> dict[str, Any] | None:
    from berth.cli.client import APIError, q

    try:
        r = c.request("HEAD", f"/containers/{q(container)}/archive", {"path": path})
    except APIError as e:
        if e.status == 404 and "no such container" not in e.message.lower():
            return None
        raise
    r.close()
    h = r.headers.get("x-docker-container-path-stat")
    return json.loads(base64.b64decode(h)) if h else {}


def _copy_out(c: Any, container: str, src: str, dest: str) -> None:
    from berth.cli.client import q
    from berth.cli.fmt import human_size

    r = c.request("GET", f"/containers/{q(container)}/archive", {"path": src})
    if dest == "-":
        for part in r.iter_raw():
            sys.stdout.buffer.write(part)
        sys.stdout.buffer.flush()
        r.close()
        return
    with tempfile.TemporaryFile() as spool:
        size = 0
        for part in r.iter_raw():
            spool.write(part)
            size += len(part)
        r.close()
        spool.seek(0)
        with tarfile.open(fileobj=spool, mode="r|") as tf:
            members = []
            src_name = None
            dest_is_dir = os.path.isdir(dest)
            if not dest_is_dir and not os.path.isdir(os.path.dirname(os.path.abspath(dest))):
                raise CLIError(f"invalid output path: directory {os.path.dirname(dest)!r} does not exist", 1)
            target_dir = dest if dest_is_dir else os.path.dirname(os.path.abspath(dest))
            new_top = None if dest_is_dir else os.path.basename(dest.rstrip("/"))
            for m in tf:
                top, sep, rest = m.name.partition("/")
                if src_name is None:
                    src_name = top
                if new_top and top == src_name:
                    m.name = new_top + (sep + rest if sep else "")
                try:
                    tf.extract(m, target_dir, filter="data")
                except (tarfile.FilterError, OSError) as e:
                    raise CLIError(f"refusing to extract {m.name!r}: {e}", 1) from e
                members.append(m.name)
    sys.stderr.write(f"Successfully copied {human_size(size)} to {dest}\n")


def _copy_in(c: Any, src: str, container: str, dest: str) -> None:
    from berth.cli.client import q
    from berth.cli.fmt import human_size

    if src == "-":
        data = sys.stdin.buffer.read()
        r = c.request("PUT", f"/containers/{q(container)}/archive", {"path": dest}, data=data,
                      headers={"Content-Type": "application/x-tar"})
        r.close()
        return
    if not os.path.lexists(src):
        raise CLIError(f"lstat {os.path.abspath(src)}: no such file or directory", 1)
    st = _stat(c, container, dest)
    if st is not None and (st.get("mode", 0) & (1 << 31)):  # Go's os.ModeDir bit
        target, name = dest, os.path.basename(os.path.abspath(src))
    else:
        if dest.endswith("/"):
            raise CLIError(f"Error response from daemon: Could not find the file {dest} in container {container}", 1)
        target = os.path.dirname(dest.rstrip("/")) or "/"
        name = os.path.basename(dest.rstrip("/"))
    with tempfile.TemporaryFile() as spool:
        with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tf:
            tf.add(src, arcname=name)
        size = spool.tell()
        spool.seek(0)
        r = c.request("PUT", f"/containers/{q(container)}/archive", {"path": target}, data=spool.read(),
                      headers={"Content-Type": "application/x-tar"})
        r.close()
    sys.stderr.write(f"Successfully copied {human_size(size)} to {container}:{dest}\n")


@click.command()
@click.option("-a", "--archive", is_flag=True, help="Archive mode (copy all uid/gid information)")
@click.option("-L", "--follow-link", is_flag=True, help="Always follow symbol link in SRC_PATH")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress output during copy")
@click.argument("src", metavar="SRC")
@click.argument("dest", metavar="DEST")
def cp(archive: bool, follow_link: bool, quiet: bool, src: str, dest: str) -> None:
    """Copy files/folders between a container and the local filesystem.

    Use '-' as the source to read a tar archive from stdin and extract it to a directory destination
    in a container. Use '-' as the destination to stream a tar archive of a container source to stdout.
    """
    sc, sp = _split(src)
    dc, dp = _split(dest)
    if sc and dc:
        raise CLIError("copying between containers is not supported", 1)
    if not sc and not dc:
        raise CLIError("must specify at least one container source", 1)
    c = api()
    if quiet:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    if sc:
        _copy_out(c, sc, sp, dp)
    else:
        assert dc is not None
        _copy_in(c, sp, dc, dp)
