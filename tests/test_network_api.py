"""The Networks API through the Docker SDK: create/get/list/prune, connect/disconnect, containers.run
with network and ports, events, and bad input (400/404/409 naming the field, nothing half-made)."""

from __future__ import annotations

import os
import time

import docker
import docker.errors
import pytest

from tests.conftest import Daemon
from tests.nettools import HTTPD, berth_rules, free_port, get, links

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def test_sdk_network_calls(daemon: Daemon) -> None:
    c = daemon.client()
    since = time.time() - 1
    net = c.networks.create("sdknet", driver="bridge", labels={"team": "a"},
                            ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
                                subnet="10.231.7.0/24", gateway="10.231.7.254", iprange="10.231.7.128/25")]),
                            options={"com.docker.network.bridge.name": "sdkbr" + daemon.net_tag[1:5],
                                     "com.docker.network.driver.mtu": "1400"})
    ct = None
    try:
        assert c.networks.get("sdknet").id == net.id
        assert c.networks.get(net.id[:10]).name == "sdknet"
        assert [n.name for n in c.networks.list(names=["sdknet"])] == ["sdknet"]
        assert [n.name for n in c.networks.list(filters={"label": "team=a"})] == ["sdknet"]
        assert "sdknet" in [n.name for n in c.networks.list(filters={"type": "custom"})]
        assert "sdknet" not in [n.name for n in c.networks.list(filters={"type": "builtin"})]
        assert "sdkbr" + daemon.net_tag[1:5] in links()
        port = free_port()
        ct = c.containers.run("busybox", ["sh", "-c", HTTPD.format(body="sdk")], detach=True, network="sdknet",
                              ports={"80/tcp": ("127.0.0.1", port)})
        assert get(f"http://127.0.0.1:{port}/") == "sdk\n"
        ct.reload()
        ep = ct.attrs["NetworkSettings"]["Networks"]["sdknet"]
        assert ep["IPAddress"].startswith("10.231.7.") and int(ep["IPAddress"].rsplit(".", 1)[1]) >= 128
        assert ep["Gateway"] == "10.231.7.254" and ep["IPPrefixLen"] == 24 and ep["NetworkID"] == net.id
        assert ct.ports == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
        net.reload()
        assert list(net.attrs["Containers"]) == [ct.id]
        assert net.attrs["Options"]["com.docker.network.driver.mtu"] == "1400"
        # connect a second network to the running container, with a static address; then disconnect
        other = c.networks.create("sdknet2", ipam=docker.types.IPAMConfig(pool_configs=[
            docker.types.IPAMPool(subnet="10.231.8.0/24")]))
        other.connect(ct, ipv4_address="10.231.8.77", aliases=["extra"])
        ct.reload()
        assert ct.attrs["NetworkSettings"]["Networks"]["sdknet2"]["IPAddress"] == "10.231.8.77"
        assert "inet 10.231.8.77/24" in ct.exec_run(["ip", "-o", "-4", "addr"]).output.decode()
        with pytest.raises(docker.errors.APIError) as e:
            other.connect(ct)
        assert e.value.status_code == 403
        other.disconnect(ct)
        assert "10.231.8.77" not in ct.exec_run(["ip", "-o", "-4", "addr"]).output.decode()
        other.remove()
        events = c.events(since=since, until=time.time() + 1, decode=True, filters={"type": "network"})
        actions = [(e["Action"], e["Actor"]["Attributes"].get("name")) for e in events]
        for want in (("create", "sdknet"), ("connect", "sdknet"), ("create", "sdknet2"), ("connect", "sdknet2"),
                     ("disconnect", "sdknet2"), ("destroy", "sdknet2")):
            assert want in actions, (want, actions)
        with pytest.raises(docker.errors.APIError) as e:
            net.remove()
        assert e.value.status_code == 409
    finally:
        if ct is not None:
            ct.remove(force=True)
        for n in c.networks.list(names=["sdknet", "sdknet2"]):
            n.remove()
    assert "sdknet" not in [n.name for n in c.networks.list()]


def test_prune_keeps_used_and_predefined(daemon: Daemon) -> None:
    c = daemon.client()
    used = c.networks.create("used1")
    c.networks.create("unused1", labels={"x": "1"})
    ct = c.containers.create("busybox", ["true"], network="used1")
    try:
        assert c.networks.prune(filters={"label": "x=2"})["NetworksDeleted"] == []
        assert c.networks.prune()["NetworksDeleted"] == ["unused1"]
        assert {"bridge", "host", "none", "used1"} <= {n.name for n in c.networks.list()}
    finally:
        ct.remove(force=True)
        used.remove()


def _status(call) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    try:
        call()
    except docker.errors.APIError as e:
        return e.status_code, str(e.explanation)
    raise AssertionError("the call succeeded")


def test_bad_input_names_the_field_and_makes_nothing(daemon: Daemon) -> None:
    api = daemon.client().api
    before = ({n["Name"] for n in api.networks()}, links(), berth_rules(daemon.net_tag))
    bridge_subnet = api.inspect_network("bridge")["IPAM"]["Config"][0]["Subnet"]
    pool = docker.types.IPAMPool
    cases = [
        (lambda: api.create_network("bad1", ipam=docker.types.IPAMConfig(pool_configs=[pool(subnet="10.9.0.0/33")])),
         400, "Subnet"),
        (lambda: api.create_network("bad2", ipam=docker.types.IPAMConfig(pool_configs=[pool(subnet="bogus")])),
         400, "Subnet"),
        (lambda: api.create_network("bad3", ipam=docker.types.IPAMConfig(pool_configs=[pool(subnet=bridge_subnet)])),
         400, "overlaps"),
        (lambda: api.create_network("bad4", ipam=docker.types.IPAMConfig(pool_configs=[
            pool(subnet="10.9.0.0/24", gateway="10.9.1.1")])), 400, "Gateway"),
        (lambda: api.create_network("bad5", ipam=docker.types.IPAMConfig(pool_configs=[
            pool(subnet="10.9.0.0/24", iprange="10.8.0.0/25")])), 400, "IPRange"),
        (lambda: api.create_network("bad6", enable_ipv6=True), 400, "IPv6"),
        (lambda: api.create_network("bad7", driver="overlay"), 404, "overlay"),
        (lambda: api.create_network("bridge"), 409, "already exists"),
        (lambda: api.create_network("bad8", options={"com.docker.network.driver.mtu": "abc"}), 400, "mtu"),
        (lambda: api.connect_container_to_network("busybox-none", "nosuchnet"), 404, "nosuchnet"),
        (lambda: api.remove_network("nosuchnet"), 404, "nosuchnet"),
        (lambda: api.remove_network("bridge"), 403, "pre-defined"),
        (lambda: api.create_container("busybox", ["true"], host_config=api.create_host_config(
            port_bindings={"80/tcp": ("127.0.0.1", "notaport")})), 400, "hostPort"),
        (lambda: api.create_container("busybox", ["true"], ports=["80/bogus"], host_config=api.create_host_config(
            port_bindings={"80/bogus": 8080})), 400, "proto"),
        (lambda: api.create_container("busybox", ["true"], host_config=api.create_host_config(
            network_mode="nosuchnet")), 400, "nosuchnet"),
    ]
    for call, status, word in cases:
        code, msg = _status(call)
        assert code == status and word.lower() in msg.lower(), (status, word, code, msg)
    assert ({n["Name"] for n in api.networks()}, links(), berth_rules(daemon.net_tag)) == before
    assert api.containers(all=True, filters={"ancestor": "busybox", "status": "created"}) == []
    # a name taken by a network already made is a 409, and the first one stays intact
    api.create_network("dup1")
    try:
        assert _status(lambda: api.create_network("dup1"))[0] == 409
        assert len(api.networks(names=["dup1"])) == 1
    finally:
        api.remove_network("dup1")


def test_ipam_hands_out_each_address_once_and_frees_it(daemon: Daemon) -> None:
    """Five starts at once on a /29 (five addresses besides the gateway): five different addresses;
    a sixth start finds none free, with nothing left of it; a stop frees one for the next start."""
    from concurrent.futures import ThreadPoolExecutor

    c = daemon.client()
    net = c.networks.create("tiny", ipam=docker.types.IPAMConfig(pool_configs=[
        docker.types.IPAMPool(subnet="10.231.9.0/29")]))
    made = [c.containers.create("busybox", ["sleep", "300"], network="tiny") for _ in range(6)]
    try:
        with ThreadPoolExecutor(5) as pool:
            list(pool.map(lambda ct: ct.start(), made[:5]))
        ips = []
        for ct in made[:5]:
            ct.reload()
            ips.append(ct.attrs["NetworkSettings"]["Networks"]["tiny"]["IPAddress"])
        assert sorted(ips) == [f"10.231.9.{i}" for i in range(2, 7)]
        before = links()
        with pytest.raises(docker.errors.APIError) as e:
            made[5].start()
        assert "no available IPv4 addresses" in str(e.value.explanation)
        assert links() == before
        made[2].stop(timeout=0)
        made[5].start()
        made[5].reload()
        assert made[5].attrs["NetworkSettings"]["Networks"]["tiny"]["IPAddress"] == ips[2]
    finally:
        for ct in made:
            ct.remove(force=True)
        net.remove()


def test_a_container_cannot_take_the_gateway_address(daemon: Daemon) -> None:
    """``--ip`` with the network's gateway would put a second host on the bridge's own address (its
    ARP answers race the bridge's: other containers' traffic to their gateway could go to it).
    dockerd's IPAM has the gateway reserved: the start fails, 409, and leaves nothing."""
    c = daemon.client()
    net = c.networks.create("gwnet", ipam=docker.types.IPAMConfig(pool_configs=[
        docker.types.IPAMPool(subnet="10.231.10.0/24", gateway="10.231.10.1")]))
    try:
        ct = c.containers.create("busybox", ["sleep", "300"], network="gwnet")
        c.api.disconnect_container_from_network(ct.id, "gwnet")
        c.api.connect_container_to_network(ct.id, "gwnet", ipv4_address="10.231.10.1")
        before = links()
        with pytest.raises(docker.errors.APIError) as e:
            ct.start()
        assert e.value.status_code == 409
        assert "Address already in use" in str(e.value.explanation)
        assert links() == before
        ct.reload()
        assert ct.status == "created"
        # an address next to it is fine (the control)
        c.api.disconnect_container_from_network(ct.id, "gwnet")
        c.api.connect_container_to_network(ct.id, "gwnet", ipv4_address="10.231.10.2")
        ct.start()
        ct.reload()
        assert ct.attrs["NetworkSettings"]["Networks"]["gwnet"]["IPAddress"] == "10.231.10.2"
    finally:
        for ct in c.containers.list(all=True):
            ct.remove(force=True)
        net.remove()
