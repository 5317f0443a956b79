"""Helpers for the networking tests: what the host's network looks like, free ports, HTTP to loopback.

Every request these helpers send goes to 127.0.0.1 or to an address inside a namespace the test made.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request

HTTPD = "mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 10.0) -> str:
    """GET ``url`` (loopback only), retrying until the server is up or ``timeout`` passes."""
    assert url.startswith("http://127.0.0.1:"), url
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                return str(r.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


POOL_PREFIX = "vpl"  # berthd's veth host ends (berth/network/sandbox.py)


def links(pooled: bool = False) -> set[str]:
    """The host's interfaces; the idle sandboxes berthd keeps ready (a ``vpl`` host end whose container
    end is still down: no carrier) are counted apart, with ``pooled``."""
    out = set()
    for ln in _ip("-o", "link", "show").splitlines():
        name, flags = ln.split(":")[1].strip().split("@")[0], ln.split("<", 1)[1].split(">", 1)[0].split(",")
        idle = name.startswith(POOL_PREFIX) and "NO-CARRIER" in flags
        if idle == pooled:
            out.add(name)
    return out


def routes() -> set[str]:
    # "linkdown" says whether a bridge has a port with carrier right now: a state, not a leftover
    return {r.replace(" linkdown", "").strip() for r in _ip("-4", "route", "show").splitlines()}


def addresses() -> set[str]:
    return {" ".join(ln.split()[1:4]) for ln in _ip("-o", "-4", "addr", "show").splitlines()}


def berth_rules(tag: str) -> set[str]:
    """The iptables lines that mention this daemon's chains."""
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    return {ln for ln in out.splitlines() if f"BERTH-{tag}" in ln}


def netns_files(exec_root: str) -> set[str]:
    import os

    d = os.path.join(exec_root, "netns")
    return set(os.listdir(d)) - {"pool"} if os.path.isdir(d) else set()


def pool_files(exec_root: str) -> set[str]:
    import os

    d = os.path.join(exec_root, "netns", "pool")
    return set(os.listdir(d)) if os.path.isdir(d) else set()


def host_view(prefixes: tuple[str, ...] = (POOL_PREFIX, "br-", "bt")) -> dict[str, set[str]]:
    """Berth's part of the host's network (links named as Berth names them, and the routes and addresses
    on them): other programs on a shared host may add and remove interfaces of their own meanwhile."""
    mine = {n for n in links() if n.startswith(prefixes)}
    return {"links": mine, "routes": {r for r in routes() if any(f"dev {n} " in r + " " for n in mine)},
            "addresses": {a for a in addresses() if a.split()[0] in mine}}


def wait_for(pred, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return bool(pred())


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout
