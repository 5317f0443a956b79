"""The per-container /etc files berthd writes and binds in: hostname, hosts, resolv.conf.

Kept apart so that networking can take them over: it knows the container's addresses,
aliases and DNS servers, which belong in these files.
"""

from __future__ import annotations

from berth.containers.store import Container
from berth.fsutil import write_file

_HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
          "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def write(c: Container) -> None:
    """Write the container's hostname, hosts and resolv.conf (at create)."""
    hostname = c.config["Hostname"]
    write_file(c.hostname_path, (hostname + "\n").encode())
    hosts = _HOSTS
    if c.host_config.get("NetworkMode") == "host":
        try:
            with open("/etc/hosts") as f:
                hosts = f.read()
        except OSError:
            pass
    else:
        hosts += f"127.0.1.1\t{hostname}\n"
    write_file(c.hosts_path, hosts.encode())
    try:
        with open("/etc/resolv.conf") as f:
            lines = [ln for ln in f.read().splitlines()
                     if not (ln.startswith("nameserver") and ln.split()[1:2] and
                             ln.split()[1].startswith(("127.", "::1")))]
    except OSError:
        lines = []
    if not any(ln.startswith("nameserver") for ln in lines):
        lines += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    write_file(c.resolv_conf_path, ("\n".join(lines) + "\n").encode())


def write_hosts(c: Container, addresses: list[str]) -> None:
    """At a start on a network: the container's own name at its addresses, as Docker writes it."""
    hostname = c.config["Hostname"]
    names = hostname + (f".{c.config['Domainname']}\t{hostname}" if c.config.get("Domainname") else "")
    write_file(c.hosts_path, (_HOSTS + "".join(f"{a}\t{names}\n" for a in addresses)).encode())


def write_resolv(c: Container, embedded_dns: bool) -> None:
    """At a start: the embedded DNS server (user-defined networks) or the host's resolvers."""
    if not embedded_dns:
        return  # written at create
    try:
        with open("/etc/resolv.conf") as f:
            host = f.read().splitlines()
    except OSError:
        host = []
    keep = [ln for ln in host if ln.startswith(("search", "options"))]
    write_file(c.resolv_conf_path, ("nameserver 127.0.0.11\n" + "".join(ln + "\n" for ln in keep)
                                    + "options ndots:0\n").encode())


def binds(c: Container) -> dict[str, str]:
    """Path in the container -> file on the host, for the runtime spec."""
    return {"/etc/hostname": c.hostname_path, "/etc/hosts": c.hosts_path, "/etc/resolv.conf": c.resolv_conf_path}
