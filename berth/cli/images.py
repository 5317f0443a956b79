"""Image commands: images, pull, push, tag, rmi, history, save, load, import."""

from __future__ import annotations

import sys
from typing import Any

import click

from berth.cli import completion as complete
from berth.cli.common import api, filters
from berth.cli.errors import CLIError


def split_ref(ref: str) -> tuple[str, str | None]:
    """``repo[:tag]`` -> (repo, tag); a ``:`` in the registry part is a port, not a tag."""
    if "@" in ref:
        return ref, None
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, None
    return repo, tag


def registry_of(ref: str) -> str:
    first, sep, _ = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def full_ref(ref: str) -> str:
    """docker.io/library/busybox:latest for busybox, as docker prints after a pull."""
    name, sep, digest = ref.partition("@")
    repo, tag = split_ref(name)
    if registry_of(repo) == "docker.io" and not repo.startswith("docker.io/"):
        repo = "docker.io/" + (repo if "/" in repo else "library/" + repo)
    if sep:
        return f"{repo}@{digest}"
    return f"{repo}:{tag or 'latest'}"


class Progress:
    """Docker's progress display: on a TTY one line per layer id, rewritten in place; otherwise
    plain lines, one per status change (no bars)."""

    def __init__(self, out: Any, tty: bool | None = None) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.ids: list[str] = []
        self.last: dict[str, str] = {}

    def line(self, m: dict[str, Any]) -> str:
        text = m.get("status") or ""
        if self.tty and m.get("progress"):
            text += " " + m["progress"]
        return f"{m['id']}: {text}" if m.get("id") else text

    def show(self, m: dict[str, Any]) -> None:
        if "error" in m or "errorDetail" in m:
            from berth.cli.client import StreamError

            raise StreamError((m.get("errorDetail") or {}).get("message") or m.get("error") or "unknown error")
        if "stream" in m:
            self.out.write(m["stream"])
            self.out.flush()
            return
        if "aux" in m and "status" not in m:
            return
        mid = m.get("id")
        if not mid:
            self.out.write(self.line(m) + "\n")
            self.out.flush()
            return
        if not self.tty:
            if m.get("progressDetail") and m.get("status") == self.last.get(mid):
                return
            self.last[mid] = m.get("status") or ""
            self.out.write(self.line(m) + "\n")
            self.out.flush()
            return
        if mid not in self.ids:
            self.ids.append(mid)
            self.out.write(self.line(m) + "\n")
        else:
            up = len(self.ids) - self.ids.index(mid)
            self.out.write(f"\x1b[{up}A\x1b[2K\r{self.line(m)}\r\x1b[{up}B")
        self.out.flush()


def auth_header(ref: str) -> dict[str, str]:
    from berth.cli.auth import registry_auth

    a = registry_auth(registry_of(ref))
    return {"X-Registry-Auth": a} if a else {}


def pull_image(c: Any, ref: str, platform: str | None = None, quiet: bool = False, out: Any = None,
               all_tags: bool = False) -> None:
    out = out or sys.stdout
    repo, tag = split_ref(ref)
    params: dict[str, Any] = {"fromImage": repo, "platform": platform}
    if "@" not in repo and not all_tags:
        params["tag"] = tag or "latest"
    r = c.request("POST", "/images/create", params, headers=auth_header(ref))
    prog = Progress(out)
    try:
        for m in r.iter_json():
            if not quiet:
                prog.show(m)
            elif "error" in m:
                prog.show(m)
    finally:
        r.close()


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show all images (default hides intermediate images)")
@click.option("--digests", is_flag=True, help="Show digests")
@click.option("-f", "--filter", "filter_", multiple=True, help="Filter output based on conditions provided")
@click.option("--format", "fmt", default=None, help="Format output using a custom template")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs")
@click.argument("repository", required=False)
def images(all_: bool, digests: bool, filter_: tuple[str, ...], fmt: str | None, no_trunc: bool, quiet: bool,
           repository: str | None) -> None:
    """List images."""
    from berth.cli.rows import list_images

    list_images(api(), all_, filters(filter_), fmt, digests, no_trunc, quiet, repository)


@click.command()
@click.option("-a", "--all-tags", is_flag=True, help="Download all tagged images in the repository")
@click.option("--platform", default=None, help="Set platform if server is multi-platform capable")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@click.option("--disable-content-trust", is_flag=True, default=True, hidden=True)
@click.argument("name")
def pull(all_tags: bool, platform: str | None, quiet: bool, disable_content_trust: bool, name: str) -> None:
    """Download an image from a registry."""
    if all_tags and (":" in name.rsplit("/", 1)[-1] or "@" in name):
        raise CLIError("tag can't be used with --all-tags/-a", 1)
    if not all_tags and ":" not in name.rsplit("/", 1)[-1] and "@" not in name:
        if not quiet:
            click.echo("Using default tag: latest")
        name += ":latest"
    pull_image(api(), name, platform, quiet, all_tags=all_tags)
    click.echo(full_ref(name) if not all_tags else full_ref(name).rsplit(":", 1)[0])


@click.command()
@click.option("-a", "--all-tags", is_flag=True, help="Push all tags of an image to the repository")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@click.option("--platform", default=None, help="Push a platform-specific manifest")
@click.option("--disable-content-trust", is_flag=True, default=True, hidden=True)
@click.argument("name", shell_complete=complete.images)
def push(all_tags: bool, quiet: bool, platform: str | None, disable_content_trust: bool, name: str) -> None:
    """Upload an image to a registry."""
    from berth.cli.client import q

    repo, tag = split_ref(name)
    if not all_tags and tag is None and "@" not in name:
        if not quiet:
            click.echo("Using default tag: latest")
        tag = "latest"
    r = api().request("POST", f"/images/{q(repo)}/push", {"tag": None if all_tags else tag, "platform": platform},
                      headers=auth_header(name) or {"X-Registry-Auth": "e30="})
    prog = Progress(sys.stdout)
    try:
        for m in r.iter_json():
            if not quiet or "error" in m:
                prog.show(m)
    finally:
        r.close()
    if quiet:
        click.echo(f"{repo}:{tag}" if tag else repo)


@click.command()
@click.argument("source", shell_complete=complete.images)
@click.argument("target")
def tag(source: str, target: str) -> None:
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE."""
    from berth.cli.client import q

    repo, t = split_ref(target)
    api().post(f"/images/{q(source)}/tag", {"repo": repo, "tag": t or "latest"})


@click.command()
@click.option("-f", "--force", is_flag=True, help="Force removal of the image")
@click.option("--no-prune", is_flag=True, help="Do not delete untagged parents")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...", shell_complete=complete.images)
def rmi(force: bool, no_prune: bool, images: tuple[str, ...]) -> None:
    """Remove one or more images."""
    from berth.cli.client import q
    from berth.cli.common import each

    c = api()

    def one(n: str) -> None:
        for item in c.delete(f"/images/{q(n)}", force=force or None, noprune=no_prune or None) or []:
            for k, v in item.items():
                click.echo(f"{k}: {v}")

    each(images, one, echo=False)


HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
                   "Size": "SIZE", "Comment": "COMMENT"}


@click.command()
@click.option("--format", "fmt", default=None, help="Format output using a custom template")
@click.option("-H", "--human", type=click.BOOL, default=True, is_flag=False, flag_value=True,
              help="Print sizes and dates in human readable format (default true)")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs")
@click.argument("image", shell_complete=complete.images)
def history(fmt: str | None, human: bool, no_trunc: bool, quiet: bool, image: str) -> None:
    """Show the history of an image."""
    from berth.cli.client import q
    from berth.cli.fmt import ago, go_time, headers_for, human_size, write_rows

    rows = []
    for h in api().get(f"/images/{q(image)}/history"):
        hid = h.get("Id") or "<missing>"
        if hid != "<missing>" and not no_trunc:
            hid = hid.split(":", 1)[-1][:12]
        by = h.get("CreatedBy") or ""
        if not no_trunc and len(by) > 45:
            by = by[:44] + "…"
        rows.append({"ID": hid, "CreatedSince": ago(h.get("Created") or 0) if human else go_time(h.get("Created") or 0),
                     "CreatedAt": go_time(h.get("Created") or 0), "CreatedBy": by,
                     "Size": human_size(h.get("Size") or 0) if human else str(h.get("Size") or 0),
                     "Comment": h.get("Comment") or ""})
    write_rows(rows, fmt, "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
               headers_for(HISTORY_HEADERS), "ID", quiet)


@click.command()
@click.option("-o", "--output", default=None, help="Write to a file, instead of STDOUT")
@click.option("--platform", default=None, help="Save only the given platform variant")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...", shell_complete=complete.images)
def save(output: str | None, platform: str | None, images: tuple[str, ...]) -> None:
    """Save one or more images to a tar archive (streamed to STDOUT by default)."""
    from berth.cli.containers import stream_to

    if not output and sys.stdout.isatty():
        raise CLIError("cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    stream_to(api().request("GET", "/images/get", {"names": list(images), "platform": platform}), output)


def _file_chunks(f: Any) -> Any:
    while True:
        b = f.read(1 << 20)
        if not b:
            return
        yield b


@click.command()
@click.option("-i", "--input", "path", default=None, help="Read from tar archive file, instead of STDIN")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output")
@click.option("--platform", default=None, help="Load only the given platform variant")
def load(path: str | None, quiet: bool, platform: str | None) -> None:
    """Load an image from a tar archive or STDIN."""
    if path is None and sys.stdin.isatty():
        raise CLIError("requested load from stdin, but stdin is empty", 1)
    f = open(path, "rb") if path else sys.stdin.buffer  # noqa: SIM115
    try:
        r = api().request("POST", "/images/load", {"quiet": quiet, "platform": platform}, data=_file_chunks(f),
                          headers={"Content-Type": "application/x-tar"})
    finally:
        if path:
            f.close()
    prog = Progress(sys.stdout)
    try:
        for m in r.iter_json():
            prog.show(m)
    finally:
        r.close()


@click.command("import")
@click.option("-c", "--change", multiple=True, help="Apply Dockerfile instruction to the created image")
@click.option("-m", "--message", default=None, help="Set commit message for imported image")
@click.option("--platform", default=None, help="Set platform if server is multi-platform capable")
@click.argument("source")
@click.argument("repository", required=False)
def import_(change: tuple[str, ...], message: str | None, platform: str | None, source: str,
            repository: str | None) -> None:
    """Import the contents from a tarball to create a filesystem image."""
    repo, tag = split_ref(repository) if repository else (None, None)
    params: dict[str, Any] = {"repo": repo, "tag": tag, "message": message, "platform": platform,
                              "changes": list(change) or None}
    c = api()
    if source.startswith(("http://", "https://")):
        params["fromSrc"] = source
        r = c.request("POST", "/images/create", params)
    else:
        params["fromSrc"] = "-"
        f = sys.stdin.buffer if source == "-" else open(source, "rb")  # noqa: SIM115
        try:
            r = c.request("POST", "/images/create", params, data=_file_chunks(f),
                          headers={"Content-Type": "application/x-tar"})
        finally:
            if source != "-":
                f.close()
    try:
        for m in r.iter_json():
            if "error" in m:
                Progress(sys.stdout).show(m)
            if m.get("status", "").startswith("sha256:"):
                click.echo(m["status"])
    finally:
        r.close()
