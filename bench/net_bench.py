#!/usr/bin/env python3
"""Networking benchmark: what joining the default bridge adds to ``docker run --rm busybox true``
(against ``--network none``, alternating, same run), throughput from one container to another on one
bridge and from the host to a published port (bounded transfers, loopback and the bench's own
containers only), and dockerd's bridge against its none when dockerd is installed.

Needs root. Starts a private berthd (its own bridge, subnet pool and iptables chains, all removed
again) and, for the comparison, a private dockerd on its own socket, data root and a bridge this
script makes (``--iptables=false``: the start path is what is compared), ended by its PID.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

try:
    from bench.run_bench import BenchError, Berthd, unmount_all
except ImportError:  # run as a script: bench/ is on sys.path
    from run_bench import BenchError, Berthd, unmount_all  # type: ignore[no-redef]

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
SERVE = "mkdir -p /www && dd if=/dev/zero of=/www/blob bs=1M count={mb} 2>/dev/null && exec httpd -f -p 80 -h /www"


def cli(host: str, *args: str, timeout: float = 120) -> str:
    r = subprocess.run([DOCKER, "-H", host, *args], capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise BenchError(f"docker {' '.join(args)}: {r.stderr.decode().strip()}")
    return r.stdout.decode()


def timed(host: str, *args: str) -> float:
    t0 = time.perf_counter()
    cli(host, *args)
    return time.perf_counter() - t0


def run_pairs(host: str, n: int) -> tuple[list[float], list[float], list[float]]:
    """``run --rm`` on the default network and with --network none, alternating (after a warm-up)."""
    for _ in range(2):
        timed(host, "run", "--rm", "busybox", "true")
        timed(host, "run", "--rm", "--network", "none", "busybox", "true")
    bridge, none, diffs = [], [], []
    for i in range(n):
        order = [("bridge", []), ("none", ["--network", "none"])]
        if i % 2:
            order.reverse()
        pair = {}
        for kind, extra in order:
            pair[kind] = timed(host, "run", "--rm", *extra, "busybox", "true")
        bridge.append(pair["bridge"])
        none.append(pair["none"])
        diffs.append(pair["bridge"] - pair["none"])
    return bridge, none, diffs


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                r.read(1)
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def throughput(host: str, mb: int, rounds: int) -> tuple[float, float]:
    """MB/s container -> container (wget from a second container) and host -> published port."""
    port = _free_port()
    server = cli(host, "run", "-d", "--tmpfs", f"/www:size={mb + 16}m", "-p", f"127.0.0.1:{port}:80", "busybox",
                 "sh", "-c", SERVE.format(mb=mb)).strip()
    client = cli(host, "run", "-d", "busybox", "sleep", "3600").strip()
    try:
        ip = cli(host, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", server).strip()
        wait_http(f"http://127.0.0.1:{port}/blob")
        c2c, h2c = [], []
        for _ in range(rounds):
            t = timed(host, "exec", client, "wget", "-qO", "/dev/null", f"http://{ip}/blob")
            base = timed(host, "exec", client, "true")  # the exec's own cost, taken off
            c2c.append(mb / max(t - base, 1e-6))
            t0 = time.perf_counter()
            got = 0
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/blob", timeout=60) as r:
                while chunk := r.read(1 << 20):
                    got += len(chunk)
            h2c.append(got / (1 << 20) / (time.perf_counter() - t0))
        return statistics.median(c2c), statistics.median(h2c)
    finally:
        cli(host, "rm", "-f", server, client)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def busybox_tar() -> bytes:
    from berth.tools import mkbusybox

    return mkbusybox.build("/bin/busybox", "busybox:latest")


def berth_figures(args: argparse.Namespace, root: str) -> dict[str, float]:
    d = Berthd(os.path.join(root, "berth"), extra=["--default-address-pool", "base=172.29.0.0/16,size=24",
                                                   "--log-level", "debug"])
    os.makedirs(d.root)
    try:
        d.start()
        assert d.client is not None
        list(d.client.api.load_image(busybox_tar()))
        bridge, none, diffs = run_pairs(d.host, args.runs)
        # berthd's own account of the start path's network step (debug log): immune to the host's load
        with open(d.log_path, errors="replace") as f:
            steps = [float(m) for m in re.findall(r"network ([0-9.]+) ms", f.read())]
        c2c, h2c = throughput(d.host, args.mb, args.rounds)
        return {"bridge": statistics.median(bridge), "none": statistics.median(none), "diff": statistics.median(diffs),
                "step": statistics.median([s for s in steps if s > 0.05] or [0.0]), "c2c": c2c, "h2c": h2c}
    finally:
        d.stop()
        unmount_all(d.root)


def dockerd_figures(args: argparse.Namespace, root: str) -> dict[str, float] | None:
    if not os.path.exists(DOCKERD):
        return None
    droot = os.path.join(root, "dockerd")
    os.makedirs(droot)
    bridge = "dkb" + os.urandom(3).hex()
    sock = f"unix://{droot}/d.sock"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    proc = None
    try:
        subprocess.run(["ip", "addr", "add", args.dockerd_bip, "dev", bridge], check=True)
        subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
        log = open(os.path.join(droot, "dockerd.log"), "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([DOCKERD, "-H", sock, "--data-root", f"{droot}/data", "--exec-root", f"{droot}/x",
                                 "--pidfile", f"{droot}/d.pid", "--bridge", bridge, "--iptables=false",
                                 "--ip-forward=false", "--storage-driver=overlay2", "--log-level=warn"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 60
        while subprocess.run([DOCKER, "-H", sock, "version"], capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"dockerd did not start; see {droot}/dockerd.log")
            time.sleep(0.2)
        subprocess.run([DOCKER, "-H", sock, "load"], input=busybox_tar(), capture_output=True, check=True)
        bridge_t, none_t, diffs = run_pairs(sock, args.runs)
        return {"bridge": statistics.median(bridge_t), "none": statistics.median(none_t),
                "diff": statistics.median(diffs)}
    finally:
        if proc is not None and proc.poll() is None:
            subprocess.run([DOCKER, "-H", sock, "rm", "-f", *cli(sock, "ps", "-aq").split()], capture_output=True)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        unmount_all(droot)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=15, help="run --rm pairs per engine")
    p.add_argument("--mb", type=int, default=256, help="size of each transfer (MB)")
    p.add_argument("--rounds", type=int, default=3, help="transfers per direction")
    p.add_argument("--dockerd-bip", default="172.28.250.1/24", help="address of the dockerd comparison's bridge")
    p.add_argument("--no-dockerd", action="store_true")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("net_bench: needs root")
    root = tempfile.mkdtemp(prefix="berth-netbench-", dir="/var/tmp")
    try:
        b = berth_figures(args, root)
        dk = None if args.no_dockerd else dockerd_figures(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = io.StringIO()
    out.write(f"run --rm busybox true, median of {args.runs} (alternating):\n")
    for label, f in (("berth", b), ("dockerd", dk)):
        if f:
            out.write(f"  {label:8} bridge {f['bridge'] * 1e3:6.1f} ms   none {f['none'] * 1e3:6.1f} ms   "
                      f"difference of medians {(f['bridge'] - f['none']) * 1e3:+6.1f} ms   "
                      f"median of paired differences {f['diff'] * 1e3:+6.1f} ms\n")
    out.write(f"  berthd's network step on the start path (its debug log), median: {b['step']:.1f} ms\n")
    out.write(f"  load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    out.write(f"throughput, {args.mb} MB per transfer, median of {args.rounds}:\n")
    out.write(f"  container -> container (one bridge)   {b['c2c']:8.0f} MB/s\n")
    out.write(f"  host -> published port (127.0.0.1)    {b['h2c']:8.0f} MB/s\n")
    print(out.getvalue(), end="")


if __name__ == "__main__":
    main()
