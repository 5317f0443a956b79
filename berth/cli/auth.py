"""``login``/``logout`` and the credentials pull/push send: ``~/.docker/config.json`` in Docker's
format (``auths`` with base64 ``user:password``), with ``credsStore``/``credHelpers`` honoured
through ``docker-credential-<helper>`` programs as Docker runs them."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from typing import Any

import click

from berth.cli.errors import CLIError

HUB = "https://index.docker.io/v1/"


def config_path() -> str:
    d = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(d, "config.json")


def load_config() -> dict[str, Any]:
    try:
        with open(config_path()) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise CLIError(f"Error loading config file {config_path()}: {e}", 1) from e


def save_config(cfg: dict[str, Any]) -> None:
    """Atomic: a temp file in the same directory, fsync'd, renamed over; 0600 (it holds secrets)."""
    path = config_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(cfg, f, indent="\t")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def server_key(registry: str) -> str:
    return HUB if registry in ("docker.io", "index.docker.io", "registry-1.docker.io", HUB, "") else registry


def _helper_for(cfg: dict[str, Any], key: str) -> str | None:
    return (cfg.get("credHelpers") or {}).get(key) or cfg.get("credsStore")


def _helper(name: str, action: str, data: str) -> str:
    try:
        p = subprocess.run([f"docker-credential-{name}", action], input=data.encode(), capture_output=True,
                           timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CLIError(f"error getting credentials - err: {e}", 1) from e
    if p.returncode != 0:
        msg = (p.stdout or p.stderr).decode(errors="replace").strip()
        if "credentials not found" in msg.lower():
            return ""
        raise CLIError(f"error getting credentials - err: exit status {p.returncode}, out: `{msg}`", 1)
    return p.stdout.decode()


def credentials(registry: str) -> dict[str, str] | None:
    cfg = load_config()
    key = server_key(registry)
    helper = _helper_for(cfg, key)
    if helper:
        out = _helper(helper, "get", key)
        if out.strip():
            d = json.loads(out)
            if d.get("Username") == "<token>":
                return {"identitytoken": d.get("Secret", ""), "serveraddress": key}
            return {"username": d.get("Username", ""), "password": d.get("Secret", ""), "serveraddress": key}
    entry = (cfg.get("auths") or {}).get(key) or {}
    if entry.get("identitytoken"):
        return {"identitytoken": entry["identitytoken"], "serveraddress": key}
    if entry.get("auth"):
        user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
        return {"username": user, "password": pw, "serveraddress": key}
    return None


def registry_auth(registry: str) -> str:
    """The X-Registry-Auth header value (base64url JSON), or "" without stored credentials."""
    cred = credentials(registry)
    if not cred:
        return ""
    return base64.urlsafe_b64encode(json.dumps(cred).encode()).decode()


@click.command()
@click.option("-u", "--username", default=None, help="Username")
@click.option("-p", "--password", default=None, help="Password or Personal Access Token (PAT)")
@click.option("--password-stdin", is_flag=True, help="Take the Password or Personal Access Token (PAT) from stdin")
@click.argument("server", required=False)
def login(username: str | None, password: str | None, password_stdin: bool, server: str | None) -> None:
    """Log in to a registry."""
    from berth.cli.common import api

    if password and password_stdin:
        raise CLIError("--password and --password-stdin are mutually exclusive", 1)
    if password_stdin:
        if not username:
            raise CLIError("Must provide --username with --password-stdin", 1)
        password = sys.stdin.read().rstrip("\r\n")
    elif password:
        sys.stderr.write("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n")
    key = server_key(server or "")
    if not username:
        username = click.prompt("Username", err=True)
    if not password:
        password = click.prompt("Password", hide_input=True, err=True)
    r = api().post("/auth", body={"username": username, "password": password, "serveraddress": key})
    token = (r or {}).get("IdentityToken") or ""
    cfg = load_config()
    helper = _helper_for(cfg, key)
    if helper:
        _helper(helper, "store", json.dumps({"ServerURL": key, "Username": "<token>" if token else username,
                                             "Secret": token or password}))
    else:
        entry: dict[str, str] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
        if token:
            entry = {"identitytoken": token}
        cfg.setdefault("auths", {})[key] = entry
        save_config(cfg)
    click.echo((r or {}).get("Status") or "Login Succeeded")


@click.command()
@click.argument("server", required=False)
def logout(server: str | None) -> None:
    """Log out from a registry."""
    key = server_key(server or "")
    cfg = load_config()
    helper = _helper_for(cfg, key)
    found = key in (cfg.get("auths") or {})
    if helper:
        _helper(helper, "erase", key)
        found = True
    if key in (cfg.get("auths") or {}):
        del cfg["auths"][key]
        save_config(cfg)
    if not found:
        click.echo(f"Not logged in to {server or key}")
        return
    click.echo(f"Removing login credentials for {server or key}")
