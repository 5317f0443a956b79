"""The API's listening sockets: a unix socket that is never reachable with a looser mode than
0660 root:root, and the rule for TCP (no unauthenticated API on a non-loopback address unless the
operator says so explicitly)."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import tempfile

from berth.daemon.config import Config

log = logging.getLogger("berthd")

SOCKET_MODE = 0o660


def bind_unix(path: str, mode: int = SOCKET_MODE, gid: int = 0) -> socket.socket:
    """A listening unix socket at ``path`` that had ``mode`` and root:gid before anyone could reach it.

    bind() creates the socket file with 0777 & ~umask, and chmod can only follow. So the socket is
    bound inside a fresh 0700 directory next to ``path`` (only root can walk into it), given its
    owner and mode there, made to listen, then renamed into place: one atomic step that also replaces
    a stale socket left by an earlier daemon. Binding through /proc/self/fd keeps the bound address
    short whatever the length of ``path``'s directory. The umask is left alone: it is process-wide,
    and other threads may be creating files at the same moment.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    private = tempfile.mkdtemp(prefix=".berth-sock-", dir=parent)
    dfd = os.open(private, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    name = "api.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(f"/proc/self/fd/{dfd}/{name}")
        os.chown(name, 0, gid, dir_fd=dfd, follow_symlinks=False)
        os.chmod(name, mode, dir_fd=dfd)
        sock.listen(128)
        os.rename(name, path, src_dir_fd=dfd)
    except BaseException:
        sock.close()
        raise
    finally:
        try:
            os.unlink(name, dir_fd=dfd)  # only there if something above failed
        except FileNotFoundError:
            pass
        os.close(dfd)
        os.rmdir(private)
    return sock


def tcp_address(host: str, tls: bool) -> tuple[str, int]:
    """``tcp://HOST:PORT`` (or ``http://``) to (host, port); an empty host is 127.0.0.1, as before."""
    hp = host.split("://", 1)[1].rstrip("/")
    if hp.startswith("["):
        h, _, rest = hp[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif hp.count(":") == 1:
        h, port = hp.split(":")
    else:
        h, port = hp, ""  # no port, or a bare IPv6 address
    if port and not port.isdigit():
        raise SystemExit(f"berthd: invalid port in host {host!r}")
    return h or "127.0.0.1", int(port) if port else (2376 if tls else 2375)


def is_loopback(h: str) -> bool:
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(h, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def refusal(host: str) -> str:
    return (f"berthd: refusing to serve the API on {host} without TLS client verification: anyone who can "
            "reach that address would have root on this host. Use --tlsverify with --tlscacert, --tlscert and "
            "--tlskey; or listen on a unix socket or a loopback address; or, to accept the risk, pass "
            "--tls=false explicitly.")


def check_hosts(cfg: Config) -> None:
    """Apply the TCP rule before anything is created; exits with ``refusal`` when it is broken."""
    for host in cfg.hosts:
        if not host.startswith(("tcp://", "http://")) or cfg.tlsverify:
            continue
        h = tcp_address(host, cfg.tls)[0]
        what = "without client authentication" + ("" if cfg.tls else " or encryption")
        if is_loopback(h):
            log.warning("API on %s is served %s: any local user or process, and scripts in a local "
                        "browser, can reach it and act as root on this host", host, what)
            continue
        if not cfg.tls_explicit:
            raise SystemExit(refusal(host))
        for line in ("*" * 78,
                     f"INSECURE: the API on {host} is served {what}.",
                     "Anyone who can reach this address can run privileged containers: root on this host.",
                     "This was asked for explicitly (--tls given without --tlsverify); use --tlsverify.",
                     "*" * 78):
            log.warning("%s", line)
        cfg.warnings.append(f"WARNING: the API on {host} is served {what}; whoever can reach it has "
                            "root on this host. Use --tlsverify.")
