"""A "far" registry for the mirror benches: a network namespace made here, joined to the host by a veth
pair whose two ends each delay by ``delay`` and limit to ``rate``, so a round trip costs twice the
delay. With the ``netem`` qdisc that is ``tc qdisc add dev IF root netem delay D rate R``; a kernel
without netem (this one: only pfifo and tbf among the qdiscs) gets ``tbf`` for the rate and
bench/delay_relay.py, a TCP relay inside the namespace that delays each direction, for the latency.

Traffic stays between the host and that namespace. The addresses are from 198.18.0.0/15, the range
set aside for benchmarks (RFC 2544). Everything is removed on exit, also on failure.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from types import TracebackType

HOST_ADDR = "198.18.0.1"
NS_ADDR = "198.18.0.2"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class FarNetwork:
    def __init__(self, delay: str = "20ms", rate: str = "200mbit") -> None:
        tag = f"{os.getpid() % 100000}"
        self.ns = f"berth-far-{tag}"
        self.host_if, self.ns_if = f"bfh{tag}", f"bfn{tag}"
        self.ns_addr = NS_ADDR
        self.delay, self.rate = delay, rate
        self.netem = False

    def __enter__(self) -> FarNetwork:
        try:
            _ip("netns", "add", self.ns)
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _ip("link", "set", self.ns_if, "netns", self.ns)
            _ip("addr", "add", f"{HOST_ADDR}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            _ip("-n", self.ns, "addr", "add", f"{NS_ADDR}/30", "dev", self.ns_if)
            _ip("-n", self.ns, "link", "set", self.ns_if, "up")
            _ip("-n", self.ns, "link", "set", "lo", "up")
            self.netem = self._qdisc(["netem", "delay", self.delay, "rate", self.rate, "limit", "10000"])
            if not self.netem:  # rate by tbf (burst above a GSO packet), latency by the relay
                if not self._qdisc(["tbf", "rate", self.rate, "burst", "256kb", "latency", "100ms"]):
                    raise RuntimeError("neither the netem nor the tbf qdisc is available")
        except BaseException:
            self.close()
            raise
        return self

    def _qdisc(self, spec: list[str]) -> bool:
        """``spec`` as the root qdisc of both veth ends; False when the kernel lacks that qdisc."""
        host = subprocess.run(["tc", "qdisc", "replace", "dev", self.host_if, "root", *spec], capture_output=True)
        if host.returncode != 0:
            return False
        subprocess.run(["ip", "netns", "exec", self.ns, "tc", "qdisc", "replace", "dev", self.ns_if, "root", *spec],
                       check=True, capture_output=True)
        return True

    def serve(self, cmd: Callable[[str, int], list[str]], port: int = 5000) -> list[subprocess.Popen[bytes]]:
        """Run the server ``cmd(host, port)`` in the namespace, reached from the host at ns_addr:port
        (through the delaying relay when there is no netem). The processes, to stop in reverse order."""
        if self.netem:
            procs = [self.popen(cmd(self.ns_addr, port))]
        else:
            procs = [self.popen(cmd("127.0.0.1", port + 1))]
            relay = os.path.join(os.path.dirname(os.path.abspath(__file__)), "delay_relay.py")
            procs.append(self.popen([sys.executable, relay, f"{self.ns_addr}:{port}", f"127.0.0.1:{port + 1}",
                                     self.delay.removesuffix("ms")]))
        self.wait(port)
        return procs

    def popen(self, cmd: list[str]) -> subprocess.Popen[bytes]:
        """``cmd`` inside the namespace (``ip netns exec`` execs it: the PID is the command's)."""
        return subprocess.Popen(["ip", "netns", "exec", self.ns, *cmd],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait(self, port: int, timeout: float = 20) -> None:
        """Until an HTTP request to ns_addr:port gets an answer (the relay alone listening is not enough)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.ns_addr, port), timeout=2) as s:
                    s.sendall(b"GET /v2/ HTTP/1.0\r\n\r\n")
                    if s.recv(5) == b"HTTP/":
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"nothing answers on {self.ns_addr}:{port} in {self.ns}")

    def close(self) -> None:
        # Deleting the namespace deletes its veth end, which takes the host end with it.
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
