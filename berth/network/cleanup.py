"""``berthd --network-cleanup``: take away every bridge, veth, namespace and iptables rule a berthd
made (with berthd stopped: it holds the data root's lock). The records stay, so the next berthd
makes the networks again; containers still running lose their network."""

from __future__ import annotations

import os
import sqlite3

from berth.network import firewall, links, netns
from berth.network.config import NetConfig
from berth.network.store import NetworkStore


def remove_everything(conn: sqlite3.Connection, exec_root: str, cfg: NetConfig) -> list[str]:
    """What was removed, one line each."""
    done: list[str] = []
    store = NetworkStore(conn)
    nl = links.Netlink()
    try:
        for ep in store.endpoints():
            host = (ep.live or {}).get("host_ifname")
            if host and nl.run_sync(nl.delete_link, host):
                done.append(f"veth {host}")
        d = os.path.join(exec_root, "netns")
        for sub in (os.path.join(d, "pool"), d):
            for name in sorted(os.listdir(sub)) if os.path.isdir(sub) else []:
                if name != "pool":
                    netns.remove(os.path.join(sub, name))
                    done.append(f"network namespace {name[:12]}")
        for ep in store.endpoints():
            store.release(ep.container_id, ep.network_id)
        for n in store.networks():
            if nl.run_sync(nl.delete_link, n.bridge):
                done.append(f"bridge {n.bridge} ({n.subnet})")
    finally:
        nl.close()
    if cfg.iptables:
        firewall.remove_all(firewall.Chains(cfg.tag))
        done.append("iptables chains " + firewall.Chains(cfg.tag).forward + "*")
    return done
