"""``run``, ``create``, ``start`` and ``exec``: the commands that attach to a container's streams."""

from __future__ import annotations

import sys
import threading
from typing import Any

import click

from berth.cli import completion as complete
from berth.cli.common import api
from berth.cli.errors import CLIError
from berth.cli.runopts import container_options


def _run_error(e: Exception, cmd: str = "run") -> CLIError:
    """Docker's exit codes for a container that cannot start: 127 command not found,
    126 not executable, else 125."""
    msg = str(e)
    low = msg.lower()
    code = 125
    if "executable file not found" in low or "no such file or directory" in low:
        code = 127
    elif "permission denied" in low or "operation not permitted" in low:
        code = 126
    return CLIError(f"berth: {msg}\n\nRun 'berth {cmd} --help' for more information", code)


def _create(c: Any, o: dict[str, Any], image: str, command: tuple[str, ...], cmd: str) -> str:
    from berth.cli.client import APIError
    from berth.cli.images import pull_image
    from berth.cli.runopts import create_body

    body = create_body(o, image, command)
    params = {"name": o["name"], "platform": o["platform"]}
    ref = image if ":" in image.rsplit("/", 1)[-1] or "@" in image else image + ":latest"
    if o["pull"] == "always":
        _pull_for_run(pull_image, c, ref, o, cmd)
    try:
        r = c.post("/containers/create", params, body=body)
    except APIError as e:
        if e.status != 404 or "image" not in e.message.lower() or o["pull"] == "never":
            raise _run_error(e, cmd) from e
        sys.stderr.write(f"Unable to find image '{ref}' locally\n")
        _pull_for_run(pull_image, c, ref, o, cmd)
        try:
            r = c.post("/containers/create", params, body=body)
        except APIError as e2:
            raise _run_error(e2, cmd) from e2
    for w in r.get("Warnings") or []:
        sys.stderr.write(f"WARNING: {w}\n")
    if o.get("cidfile"):
        with open(o["cidfile"], "x") as f:
            f.write(r["Id"])
    return str(r["Id"])


def _pull_for_run(pull_image: Any, c: Any, ref: str, o: dict[str, Any], cmd: str) -> None:
    from berth.cli.client import APIError, StreamError

    try:
        pull_image(c, ref, platform=o["platform"], quiet=o["quiet"], out=sys.stderr)
    except (APIError, StreamError) as e:
        raise _run_error(e, cmd) from e


@click.command(context_settings={"allow_interspersed_args": False})
@container_options
@click.argument("image", shell_complete=complete.images)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def create(image: str, command: tuple[str, ...], **o: Any) -> None:
    """Create a new container."""
    o["detach"] = True
    click.echo(_create(api(), o, image, command, "create"))


def _wait_thread(c: Any, cid: str, condition: str) -> tuple[threading.Thread, dict[str, Any]]:
    """Start the wait before the container starts (docker's order), so a fast exit is not missed."""
    result: dict[str, Any] = {}
    sent = threading.Event()

    def run() -> None:
        try:
            r = c.request("POST", f"/containers/{cid}/wait", {"condition": condition}, sent=sent.set)
            try:
                result["r"] = r.json()
            finally:
                r.close()
        except Exception as e:  # reported by the caller
            result["e"] = e
        finally:
            sent.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    sent.wait(30)
    return t, result


def attach_and_run(c: Any, cid: str, o: dict[str, Any], start: bool, cmd: str) -> int:
    """Attach, (start,) stream until the container exits or the user detaches; the exit code."""
    from berth.cli.attach import parse_detach_keys, pump, raw_terminal, resize_loop, signal_proxy
    from berth.cli.client import APIError

    attach = {s.lower() for s in o.get("attach_streams") or ()}
    stdin = bool(o["interactive"])
    out_on = not attach or "stdout" in attach
    err_on = not attach or "stderr" in attach
    keys = parse_detach_keys(o.get("detach_keys"))
    tty = bool(o["tty"])
    if tty and stdin and not sys.stdin.isatty():
        raise CLIError("the input device is not a TTY", 1)
    sock, left = c.hijack("POST", f"/containers/{cid}/attach",
                          {"stream": 1, "stdin": stdin, "stdout": out_on, "stderr": err_on,
                           "detachKeys": o.get("detach_keys")})
    waiter, result = _wait_thread(c, cid, "removed" if o.get("rm") else "next-exit")
    if start:
        try:
            c.post(f"/containers/{cid}/start")
        except APIError as e:
            sock.close()
            if o.get("rm"):
                try:
                    c.delete(f"/containers/{cid}", force=True)
                except APIError:
                    pass
            raise _run_error(e, cmd) from e
    stop_resize = resize_loop(lambda h, w: c.post(f"/containers/{cid}/resize", {"h": h, "w": w})) \
        if tty and sys.stdout.isatty() else None
    try:
        with raw_terminal(tty and stdin), \
                signal_proxy(o.get("sig_proxy", True) and not tty,
                             lambda s: c.post(f"/containers/{cid}/kill", {"signal": s})):
            detached = pump(sock, left, tty, stdin, keys, out_on, err_on)
    finally:
        sock.close()
        if stop_resize:
            stop_resize()
    if detached:
        sys.stderr.write("\r\nread escape sequence\r\n" if tty else "read escape sequence\n")
        return 0
    waiter.join()
    if "e" in result:
        failure = result["e"]
        if isinstance(failure, APIError) and failure.status == 404:  # removed before we asked
            return 0
        raise failure
    r = result.get("r") or {}
    err = (r.get("Error") or {}).get("Message") if isinstance(r.get("Error"), dict) else None
    if err:
        sys.stderr.write(f"berth: {err}\n")
    return int(r.get("StatusCode", 0))


@click.command(context_settings={"allow_interspersed_args": False})
@container_options
@click.argument("image", shell_complete=complete.images)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run(image: str, command: tuple[str, ...], **o: Any) -> None:
    """Create and run a new container from an image."""
    from berth.cli.client import APIError

    if o["detach"] and o["attach_streams"]:
        raise click.UsageError("Conflicting options: -a and -d")
    c = api()
    cid = _create(c, o, image, command, "run")
    if o["detach"]:
        try:
            c.post(f"/containers/{cid}/start")
        except APIError as e:
            raise _run_error(e) from e
        click.echo(cid)
        return
    code = attach_and_run(c, cid, o, True, "run")
    if code:
        raise CLIError("", code)


@click.command()
@click.option("-a", "--attach", "attach_", is_flag=True, help="Attach STDOUT/STDERR and forward signals")
@click.option("-i", "--interactive", is_flag=True, help="Attach container's STDIN")
@click.option("--detach-keys", default=None, help="Override the key sequence for detaching a container")
@click.argument("containers", nargs=-1, required=True, metavar="CONTAINER...", shell_complete=complete.containers)
def start(attach_: bool, interactive: bool, detach_keys: str | None, containers: tuple[str, ...]) -> None:
    """Start one or more stopped containers."""
    from berth.cli.client import APIError, q
    from berth.cli.common import each

    c = api()
    if attach_ or interactive:
        if len(containers) > 1:
            raise CLIError("you cannot start and attach multiple containers at once", 1)
        info = c.get(f"/containers/{q(containers[0])}/json")
        cfg = info.get("Config") or {}
        o = {"interactive": interactive and bool(cfg.get("OpenStdin")), "tty": bool(cfg.get("Tty")),
             "detach_keys": detach_keys, "rm": bool((info.get("HostConfig") or {}).get("AutoRemove")),
             "sig_proxy": True}
        try:
            code = attach_and_run(c, info["Id"], o, True, "start")
        except CLIError as e:
            e.code = 1 if e.code == 125 else e.code
            raise
        if code:
            raise CLIError("", code)
        return

    def one(n: str) -> None:
        c.post(f"/containers/{q(n)}/start")

    try:
        each(containers, one)
    except APIError as e:
        raise CLIError(str(e), 1) from e


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Detached mode: run command in the background")
@click.option("--detach-keys", default=None, help="Override the key sequence for detaching a container")
@click.option("-e", "--env", multiple=True, help="Set environment variables")
@click.option("--env-file", multiple=True, help="Read in a file of environment variables")
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached")
@click.option("--privileged", is_flag=True, help="Give extended privileges to the command")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY")
@click.option("-u", "--user", default=None, help="Username or UID (format: <name|uid>[:<group|gid>])")
@click.option("-w", "--workdir", default=None, help="Working directory inside the container")
@click.argument("container", shell_complete=complete.containers)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(detach: bool, detach_keys: str | None, env: tuple[str, ...], env_file: tuple[str, ...],
          interactive: bool, privileged: bool, tty: bool, user: str | None, workdir: str | None, container: str,
          command: tuple[str, ...]) -> None:
    """Execute a command in a running container."""
    from berth.cli.attach import parse_detach_keys, pump, raw_terminal, resize_loop, terminal_size
    from berth.cli.client import q
    from berth.cli.runopts import env_list

    c = api()
    keys = parse_detach_keys(detach_keys)
    if tty and interactive and not sys.stdin.isatty():
        raise CLIError("the input device is not a TTY", 1)
    body = {"AttachStdin": interactive and not detach, "AttachStdout": not detach, "AttachStderr": not detach,
            "Tty": tty, "Cmd": list(command), "Env": env_list(env, env_file), "User": user or "",
            "WorkingDir": workdir or "", "Privileged": privileged, "DetachKeys": detach_keys or ""}
    size = terminal_size() if tty else None
    if size:  # the exec's terminal starts at this size, before the first resize (as docker's CLI)
        body["ConsoleSize"] = list(size)
    eid = c.post(f"/containers/{q(container)}/exec", body=body)["Id"]
    if detach:
        c.post(f"/exec/{eid}/start", body={"Detach": True, "Tty": tty})
        return
    start: dict[str, Any] = {"Detach": False, "Tty": tty, **({"ConsoleSize": list(size)} if size else {})}
    sock, left = c.hijack("POST", f"/exec/{eid}/start", body=start)
    stop_resize = resize_loop(lambda h, w: c.post(f"/exec/{eid}/resize", {"h": h, "w": w})) \
        if tty and sys.stdout.isatty() else None
    try:
        with raw_terminal(tty and interactive):
            detached = pump(sock, left, tty, interactive, keys)
    finally:
        sock.close()
        if stop_resize:
            stop_resize()
    if detached:
        return
    code = int(c.get(f"/exec/{eid}/json").get("ExitCode") or 0)
    if code:
        raise CLIError("", code)
