"""Embedded DNS figures: queries/s answered from the name table, and the latency of one query, both measured
from a client inside a network namespace this script makes (and removes). Needs root. Loopback only.

    sudo .venv/bin/python bench/dns_bench.py [--queries 20000] [--window 32] [--pings 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from berth.network.dns import EmbeddedDNS  # noqa: E402

CLIENT = r"""
import json, socket, struct, sys, time
mode, n, window = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def q(i):
    return struct.pack("!HHHHHH", i & 0xFFFF, 0x100, 1, 0, 0, 0) + b"\3web\3app\0\0\1\0\1"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.11", 53))
s.settimeout(2)
if mode == "latency":
    lat = []
    for i in range(n):
        t = time.perf_counter()
        s.send(q(i))
        s.recv(512)
        lat.append(time.perf_counter() - t)
    lat.sort()
    print(json.dumps({"median_us": lat[len(lat) // 2] * 1e6, "p99_us": lat[int(len(lat) * 0.99)] * 1e6}))
else:
    sent = got = 0
    t = time.perf_counter()
    while sent < min(window, n):
        s.send(q(sent)); sent += 1
    lost = 0
    while got + lost < n:
        try:
            s.recv(512); got += 1
        except socket.timeout:
            lost += 1  # count it and keep the window full
        if sent < n:
            s.send(q(sent)); sent += 1
    dt = time.perf_counter() - t
    print(json.dumps({"qps": got / dt, "answered": got, "lost": lost, "seconds": dt}))
"""


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=20000)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--pings", type=int, default=2000)
    args = ap.parse_args()
    ns = f"berth-dnsbench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    dns = EmbeddedDNS(lambda: [], query_rate=None)  # the server's capacity, not the per-container limit
    try:
        table = {"web.app": ["192.0.2.10", "192.0.2.11"]}
        await dns.attach("bench", f"/run/netns/{ns}", lambda name: table.get(name, []))
        out = {}
        for mode, n in (("latency", args.pings), ("throughput", args.queries)):
            proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, mode, str(n), str(args.window),
                stdout=subprocess.PIPE)
            raw, _ = await proc.communicate()
            out[mode] = json.loads(raw)
        print(json.dumps(out, indent=2))
    finally:
        await dns.close()
        subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    asyncio.run(main())
