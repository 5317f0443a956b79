"""The network package's records: networks, and endpoints (a container on a network) with the
address each holds. Addresses are handed out inside one SQLite transaction before anything is
configured, and ``UNIQUE(network_id, address)`` makes a second holder impossible, across restarts
and crashes alike; an address is freed (set NULL) when its container stops or leaves."""

from __future__ import annotations

import ipaddress
import json
import sqlite3
from dataclasses import asdict, dataclass, field
from typing import Any

from berth.db import Step, migrate, schema_problem, transaction
from berth.errors import Conflict, InvalidParameter
from berth.storecheck import Findings

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
    container_id TEXT NOT NULL,
    network_id TEXT NOT NULL REFERENCES networks(id),
    config TEXT NOT NULL,
    address TEXT,
    live TEXT,
    PRIMARY KEY (container_id, network_id),
    UNIQUE (network_id, address)
);
"""
MIGRATIONS: list[Step] = [SCHEMA]


@dataclass
class Network:
    id: str
    name: str
    created: str
    subnet: str  # "172.17.0.0/16"
    gateway: str
    bridge: str  # the host interface
    ip_range: str = ""
    driver: str = "bridge"
    internal: bool = False
    attachable: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    mtu: int = 1500
    predefined: bool = False  # the default "bridge" network
    user_ipam: bool = False  # the subnet was given by the user (static addresses allowed)

    @property
    def net(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)


@dataclass
class Endpoint:
    container_id: str
    network_id: str
    config: dict[str, Any]  # Aliases, IPAMConfig, MacAddress as asked
    address: str | None = None
    live: dict[str, Any] | None = None  # EndpointID, host_ifname, ifname, MacAddress while plugged


class NetworkStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        migrate(conn, "networks", MIGRATIONS)

    # -- networks --------------------------------------------------------------------------------------
    def networks(self) -> list[Network]:
        return [Network(**json.loads(r[0])) for r in self.conn.execute("SELECT record FROM networks")]

    def add(self, n: Network) -> None:
        with transaction(self.conn):
            if self.conn.execute("SELECT 1 FROM networks WHERE name=?", (n.name,)).fetchone():
                raise Conflict(f"network with name {n.name} already exists")
            self.conn.execute("INSERT INTO networks VALUES (?,?,?)", (n.id, n.name, json.dumps(asdict(n))))

    def delete(self, nid: str) -> None:
        with transaction(self.conn):
            self.conn.execute("DELETE FROM endpoints WHERE network_id=?", (nid,))
            self.conn.execute("DELETE FROM networks WHERE id=?", (nid,))

    # -- endpoints -------------------------------------------------------------------------------------
    def endpoints(self, container_id: str | None = None, network_id: str | None = None) -> list[Endpoint]:
        q, args = "SELECT container_id, network_id, config, address, live FROM endpoints WHERE 1", []
        if container_id is not None:
            q += " AND container_id=?"
            args.append(container_id)
        if network_id is not None:
            q += " AND network_id=?"
            args.append(network_id)
        return [Endpoint(r[0], r[1], json.loads(r[2]), r[3], json.loads(r[4]) if r[4] else None)
                for r in self.conn.execute(q + " ORDER BY rowid", args)]

    def join(self, container_id: str, network_id: str, config: dict[str, Any]) -> None:
        with transaction(self.conn):
            try:
                self.conn.execute("INSERT INTO endpoints VALUES (?,?,?,NULL,NULL)",
                                  (container_id, network_id, json.dumps(config)))
            except sqlite3.IntegrityError as e:
                raise Conflict(f"endpoint with name {container_id[:12]} already exists in network") from e

    def leave(self, container_id: str, network_id: str | None = None) -> None:
        with transaction(self.conn):
            if network_id is None:
                self.conn.execute("DELETE FROM endpoints WHERE container_id=?", (container_id,))
            else:
                self.conn.execute("DELETE FROM endpoints WHERE container_id=? AND network_id=?",
                                  (container_id, network_id))

    def allocate(self, n: Network, container_id: str, wanted: str | None) -> str:
        """Hand ``container_id`` an address on ``n`` (``wanted``, or the lowest free one), recorded
        before it is configured anywhere."""
        with transaction(self.conn):
            row = self.conn.execute("SELECT address FROM endpoints WHERE container_id=? AND network_id=?",
                                    (container_id, n.id)).fetchone()
            if row is None:
                raise Conflict(f"container {container_id[:12]} is not connected to network {n.name}")
            if row[0]:
                return str(row[0])
            used = {r[0] for r in self.conn.execute(
                "SELECT address FROM endpoints WHERE network_id=? AND address IS NOT NULL", (n.id,))}
            if wanted:
                if wanted in used or wanted == n.gateway:  # the gateway is the bridge's own address
                    raise Conflict(f"Address already in use: {wanted} on network {n.name}")
                address = wanted
            else:
                address = _first_free(n, used)
            self.conn.execute("UPDATE endpoints SET address=? WHERE container_id=? AND network_id=?",
                              (address, container_id, n.id))
            return address

    def set_live(self, container_id: str, network_id: str, live: dict[str, Any] | None) -> None:
        with transaction(self.conn):
            self.conn.execute("UPDATE endpoints SET live=? WHERE container_id=? AND network_id=?",
                              (json.dumps(live) if live is not None else None, container_id, network_id))

    def release(self, container_id: str, network_id: str | None = None) -> None:
        with transaction(self.conn):
            q = "UPDATE endpoints SET address=NULL, live=NULL WHERE container_id=?"
            if network_id is None:
                self.conn.execute(q, (container_id,))
            else:
                self.conn.execute(q + " AND network_id=?", (container_id, network_id))


def _first_free(n: Network, used: set[str]) -> str:
    pool = ipaddress.IPv4Network(n.ip_range) if n.ip_range else n.net
    net = n.net
    for host in pool:
        if host in (net.network_address, net.broadcast_address):
            continue
        a = str(host)
        if a != n.gateway and a not in used:
            return a
    raise InvalidParameter(f"no available IPv4 addresses on this network's address pools: {n.name} ({pool})")


def check(conn: sqlite3.Connection) -> Findings:
    """Every record reads back and no address is held twice. Changes nothing."""
    f = Findings()
    if (p := schema_problem(conn, "networks", MIGRATIONS)) is not None:
        f.problem("database", p)
    try:
        rows = conn.execute("SELECT id, record FROM networks").fetchall()
    except sqlite3.OperationalError:
        return f
    for nid, record in rows:
        f.checked += 1
        try:
            Network(**json.loads(record))
        except (ValueError, TypeError) as e:
            f.problem(f"network {nid}", f"record cannot be read: {e}")
    return f
