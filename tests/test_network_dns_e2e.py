"""Names and /etc files end to end: the docker CLI against a real berthd with a user-defined network.

Safety: a name the network does not know is forwarded upstream. Every container here that looks such a
name up is started with ``--dns 127.0.0.1``, which (as in Docker) makes the embedded DNS ask 127.0.0.1
inside that container's own namespace, where the test runs a fake resolver. Nothing reaches the host's
resolvers or any other address.
"""

from __future__ import annotations

import os
import struct

import docker
import pytest

from tests.conftest import Daemon
from tests.dnstools import A, fake_upstream, reply_a

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

EXTERNAL = {"ext.example.test": "198.51.100.53"}


def _upstream(q: bytes, proto: str) -> bytes:
    """The fake resolver: EXTERNAL's names for A queries, an empty answer for other types, NXDOMAIN else."""
    end = 12
    labels = []
    while q[end]:
        labels.append(q[end + 1:end + 1 + q[end]].decode())
        end += 1 + q[end]
    qtype = struct.unpack_from("!H", q, end + 1)[0]
    name = ".".join(labels).lower()
    if name not in EXTERNAL:
        return reply_a(q, "", rcode=3, aa=True)
    return reply_a(q, EXTERNAL[name] if qtype == A else "")


def _run(daemon: Daemon, *args: str) -> str:
    return daemon.cli("run", "-d", *args, "busybox", "sleep", "300").stdout.decode().strip()


def _pid(daemon: Daemon, cid: str) -> int:
    return int(daemon.cli("inspect", "-f", "{{.State.Pid}}", cid).stdout.decode())


def _lookup(daemon: Daemon, cid: str, name: str) -> tuple[int, str]:
    r = daemon.cli("exec", cid, "nslookup", name, check=False)
    return r.returncode, r.stdout.decode() + r.stderr.decode()


def test_names_resolve_forward_and_follow_the_network(daemon: Daemon) -> None:
    daemon.cli("network", "create", "dnsapp")
    ids: list[str] = []
    try:
        web = _run(daemon, "--name", "dweb", "--network", "dnsapp", "--network-alias", "dsite")
        ids.append(web)
        cli = _run(daemon, "--name", "dcli", "--network", "dnsapp", "--dns", "127.0.0.1")
        ids.append(cli)
        web_ip = daemon.cli("inspect", "-f", "{{.NetworkSettings.Networks.dnsapp.IPAddress}}",
                            web).stdout.decode().strip()
        resolv = daemon.cli("exec", cli, "cat", "/etc/resolv.conf").stdout.decode()
        assert "nameserver 127.0.0.11\n" in resolv and "options ndots:0\n" in resolv
        assert "# ExtServers: [127.0.0.1]\n" in resolv and "# Overrides: [nameservers]" in resolv
        with fake_upstream(_upstream, netns_path=f"/proc/{_pid(daemon, cli)}/ns/net", port=53) as up:
            for name in ("dweb", "dsite", web[:12], "dweb.dnsapp", "DWEB"):
                code, out = _lookup(daemon, cli, name)
                assert code == 0 and web_ip in out, (name, out)
            assert not any(n in ("dweb", "dsite") for _, n, _ in up.seen)  # answered by berthd itself
            code, out = _lookup(daemon, cli, "ext.example.test")
            assert code == 0 and "198.51.100.53" in out, out
            assert up.seen[0][:2] == ("udp", "ext.example.test")
            code, out = _lookup(daemon, cli, "nothing.example.test")
            assert code != 0 and "NXDOMAIN" in out, out
            # disconnect: the name is gone (now an upstream NXDOMAIN); connect again: back
            daemon.cli("network", "disconnect", "dnsapp", web)
            code, out = _lookup(daemon, cli, "dweb")
            assert code != 0 and web_ip not in out, out
            assert any(n == "dweb" for _, n, _ in up.seen)
            daemon.cli("network", "connect", "--alias", "dsite2", "dnsapp", web)
            new_ip = daemon.cli("inspect", "-f", "{{.NetworkSettings.Networks.dnsapp.IPAddress}}",
                                web).stdout.decode().strip()
            for name in ("dweb", "dsite2"):
                code, out = _lookup(daemon, cli, name)
                assert code == 0 and new_ip in out, (name, out)
            # a stopped container's name is gone too
            daemon.cli("stop", "-t", "0", web)
            code, out = _lookup(daemon, cli, "dweb")
            assert code != 0, out
    finally:
        daemon.cli("rm", "-f", *ids, check=False)
        daemon.cli("network", "rm", "dnsapp", check=False)


def test_default_bridge_resolves_no_names_and_writes_the_hosts_resolvers(daemon: Daemon) -> None:
    out = daemon.cli("run", "--rm", "--dns-search", "corp.test", "--dns-option", "ndots:2", "busybox",
                     "cat", "/etc/resolv.conf").stdout.decode()
    assert "nameserver 127.0.0.11" not in out
    assert "search corp.test\n" in out and "options ndots:2\n" in out
    assert "(legacy)" in out and "# Overrides: [search options]" in out


def test_hosts_file_names_addresses_and_add_host(daemon: Daemon) -> None:
    gateway = daemon.client().networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]
    cid = _run(daemon, "--hostname", "h1", "--domainname", "example.com", "--add-host", "foo:192.0.2.4",
               "--add-host", "gw:host-gateway")
    try:
        ip = daemon.cli("inspect", "-f", "{{.NetworkSettings.IPAddress}}", cid).stdout.decode().strip()
        hosts = daemon.cli("exec", cid, "cat", "/etc/hosts").stdout.decode()
        assert hosts.startswith("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        assert hosts.endswith(f"192.0.2.4\tfoo\n{gateway}\tgw\n{ip}\th1.example.com h1\n"), hosts
    finally:
        daemon.cli("rm", "-f", cid)
    out = daemon.cli("run", "--rm", "--network", "none", "busybox", "cat", "/etc/hosts").stdout.decode()
    assert out.splitlines()[-1] == "ff02::2\tip6-allrouters"


def test_bad_add_host_is_a_400_in_dockers_words(daemon: Daemon) -> None:
    api = daemon.client().api
    before = {c["Id"] for c in api.containers(all=True)}
    for spec, message in (("foo:1.2", 'invalid IP address in add-host: "1.2"'),
                          ("foo", 'bad format for add-host: "foo"')):
        with pytest.raises(docker.errors.APIError) as e:
            api.create_container("busybox", "true", host_config=api.create_host_config(extra_hosts=[spec]))
        assert e.value.status_code == 400 and message in str(e.value.explanation), e.value.explanation
    assert {c["Id"] for c in api.containers(all=True)} == before
