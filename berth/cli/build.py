"""``berth build``: docker build's flags against POST /build (the classic builder's API).

The context is tarred client-side with ``.dockerignore`` applied (the Dockerfile and .dockerignore
are always sent, as Docker does), so ignored trees never cross the socket.
"""

from __future__ import annotations

import os
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from typing import IO, Any

import click

from berth.cli.common import SIZE, api, split_kv
from berth.cli.errors import CLIError

MAX_CONTEXT_ENTRIES = 1_000_000


def _matcher(root: str) -> Any:
    try:
        with open(os.path.join(root, ".dockerignore"), encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    from berth.build.dockerignore import Matcher, PatternError, read_patterns

    try:
        return Matcher(read_patterns(text))
    except PatternError as e:
        raise CLIError(f"error from sender: failed to parse .dockerignore: {e}", 1) from e


def _walk(root: str, matcher: Any, keep: set[str]) -> Iterator[tuple[str, str]]:
    """(absolute path, archive name) of what the context sends, parents before children."""
    count = 0
    stack = [""]
    while stack:
        rel = stack.pop()
        full = os.path.join(root, rel) if rel else root
        with os.scandir(full) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            r = f"{rel}/{e.name}" if rel else e.name
            is_dir = e.is_dir(follow_symlinks=False)
            count += 1
            if count > MAX_CONTEXT_ENTRIES:
                raise CLIError(f"build context has more than {MAX_CONTEXT_ENTRIES} entries", 1)
            excluded = matcher is not None and r not in keep and matcher.excluded(r, is_dir)
            if is_dir:
                if not excluded:
                    yield e.path, r
                if not excluded or matcher.may_contain_included(r):
                    stack.append(r)
            elif not excluded:
                yield e.path, r


def context_tar(root: str, dockerfile_rel: str | None, extra: tuple[str, bytes] | None) -> IO[bytes]:
    keep = {".dockerignore"} | ({dockerfile_rel} if dockerfile_rel else set())
    matcher = _matcher(root)
    spool = tempfile.TemporaryFile()
    with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, arc in _walk(root, matcher, keep):
            ti = tf.gettarinfo(path, arcname=arc)
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            if ti.isreg():
                with open(path, "rb") as f:
                    tf.addfile(ti, f)
            else:
                tf.addfile(ti)
        if extra:
            import io

            ti = tarfile.TarInfo(extra[0])
            ti.size = len(extra[1])
            ti.mode = 0o600
            tf.addfile(ti, io.BytesIO(extra[1]))
    spool.seek(0)
    return spool


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    while True:
        b = f.read(1 << 20)
        if not b:
            return
        yield b


@click.command()
@click.option("-t", "--tag", multiple=True, help="Name and optionally a tag in the 'name:tag' format")
@click.option("-f", "--file", "dockerfile", default=None, help="Name of the Dockerfile (default: 'PATH/Dockerfile')")
@click.option("--build-arg", multiple=True, help="Set build-time variables")
@click.option("--no-cache", is_flag=True, help="Do not use cache when building the image")
@click.option("--pull", is_flag=True, help="Always attempt to pull a newer version of the image")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the build output and print image ID on success")
@click.option("--target", default=None, help="Set the target build stage to build")
@click.option("--label", multiple=True, help="Set metadata for an image")
@click.option("--platform", default=None, help="Set platform if server is multi-platform capable")
@click.option("--network", default=None, help="Set the networking mode for the RUN instructions during build")
@click.option("--rm", type=click.BOOL, default=True, is_flag=False, flag_value=True,
              help="Remove intermediate containers after a successful build (default true)")
@click.option("--force-rm", is_flag=True, help="Always remove intermediate containers")
@click.option("--cache-from", multiple=True, help="Images to consider as cache sources")
@click.option("--add-host", multiple=True, help="Add a custom host-to-IP mapping (host:ip)")
@click.option("--iidfile", default=None, help="Write the image ID to the file")
@click.option("--shm-size", type=SIZE, default=None, help="Size of /dev/shm")
@click.option("-m", "--memory", type=SIZE, default=None, help="Memory limit")
@click.option("--cpu-shares", "-c", type=int, default=None, help="CPU shares (relative weight)")
@click.option("--progress", default="auto", hidden=True)
@click.option("--timestamps", type=click.Choice(["reproducible", "now"]), default="reproducible",
              help="Image and layer times: fixed (SOURCE_DATE_EPOCH or 0; the same ID for the same input) or now")
@click.argument("path", metavar="PATH | URL | -")
def build(tag: tuple[str, ...], dockerfile: str | None, build_arg: tuple[str, ...], no_cache: bool, pull: bool,
          quiet: bool, target: str | None, label: tuple[str, ...], platform: str | None, network: str | None,
          rm: bool, force_rm: bool, cache_from: tuple[str, ...], add_host: tuple[str, ...], iidfile: str | None,
          shm_size: int | None, memory: int | None, cpu_shares: int | None, progress: str, timestamps: str,
          path: str) -> None:
    """Build an image from a Dockerfile."""
    import json

    from berth.cli.images import Progress

    args: dict[str, str] = {}
    for a in build_arg:
        k, eq, v = a.partition("=")
        if eq:
            args[k] = v
        elif k in os.environ:  # --build-arg NAME takes the client's value
            args[k] = os.environ[k]
    params: dict[str, Any] = {"t": list(tag) or None, "buildargs": json.dumps(args) if args else None,
                              "nocache": no_cache or None, "pull": pull or None, "q": quiet or None,
                              "target": target, "labels": json.dumps(split_kv(label, "label")) if label else None,
                              "platform": platform, "networkmode": network, "rm": rm, "forcerm": force_rm or None,
                              "cachefrom": json.dumps(list(cache_from)) if cache_from else None,
                              "extrahosts": ",".join(add_host) or None, "shmsize": shm_size,
                              "memory": memory, "cpushares": cpu_shares,
                              "timestamps": "now" if timestamps == "now" else None}
    body: IO[bytes] | None = None
    if path.startswith(("http://", "https://", "git://", "git@", "github.com/")):
        params["remote"] = path
        if dockerfile:
            params["dockerfile"] = dockerfile
    elif path == "-":
        data = sys.stdin.buffer.read()
        if data[257:262] == b"ustar" or data[:2] in (b"\x1f\x8b", b"BZ") or data[:6] == b"\xfd7zXZ\x00":
            body = tempfile.TemporaryFile()
            body.write(data)
        else:  # a Dockerfile on stdin: a context of one file
            body = tempfile.TemporaryFile()
            with tarfile.open(fileobj=body, mode="w") as tf:
                import io

                ti = tarfile.TarInfo("Dockerfile")
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
        body.seek(0)
    else:
        if not os.path.isdir(path):
            raise CLIError(f"unable to prepare context: path \"{path}\" not found", 1)
        root = os.path.abspath(path)
        extra = None
        rel = None
        if dockerfile == "-":
            extra = (".dockerfile.stdin", sys.stdin.buffer.read())
            params["dockerfile"] = extra[0]
        elif dockerfile:
            full = os.path.abspath(dockerfile)
            if not os.path.isfile(full):
                raise CLIError(f"unable to prepare context: the Dockerfile ({dockerfile}) cannot be found", 1)
            if full.startswith(root + os.sep):
                rel = os.path.relpath(full, root)
                params["dockerfile"] = rel
            else:  # outside the context: sent alongside under a private name, as docker does
                with open(full, "rb") as f:
                    extra = (".dockerfile." + os.urandom(8).hex(), f.read())
                params["dockerfile"] = extra[0]
        else:
            rel = "Dockerfile"
        body = context_tar(root, rel, extra)
    c = api()
    try:
        r = c.request("POST", "/build", params, data=_chunks(body) if body else None,
                      headers={"Content-Type": "application/x-tar"})
    finally:
        if body:
            body.close()
    image_id = ""
    quiet_out: list[str] = []
    prog = Progress(sys.stdout)
    try:
        for m in r.iter_json():
            aux = m.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = aux["ID"]
                continue
            if quiet and "error" not in m:
                quiet_out.append(m.get("stream") or "")
                continue
            prog.show(m)
    finally:
        r.close()
    if quiet:  # the ID from aux; a daemon that sends none (dockerd with q=1) streams it as text
        click.echo(image_id or "".join(quiet_out).strip())
    if iidfile and image_id:
        with open(iidfile, "w") as f:
            f.write(image_id)
