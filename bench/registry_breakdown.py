"""Where a pull through Berth's pull-through cache spends its time, part by part, on the image of
bench/registry_bench.py (same input for every part):

- ``fetch``: the layer blobs read by a plain HTTP client (3 at a time, as berthd does; bytes
  discarded, nothing hashed) from the upstream directly, through a cold cache and a warm one. This is
  the proxy alone: upstream fetch + store-while-streaming + serving, without berthd.
- ``pull``: ``docker pull`` by berthd (direct, cold, warm) with every progress event timestamped: the
  manifest/config phase, the download phase (until the last "Download complete": download, sha256,
  fsync) and what follows it (decompress, diff-ID hash, extract, sync, commit).
- ``profile``: a cold fetch with the cache under cProfile (top functions by own time), and under
  ``strace -c -f`` (syscall counts and time).

    sudo .venv/bin/python bench/registry_breakdown.py [--mb 200] [--rounds 3] [--far]

``--far`` puts the upstream in a network namespace behind a veth pair with netem delay and rate
(see :mod:`far_upstream`), so "direct" means pulling from a far registry.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import aiohttp
import docker

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from push_pull import free_port, make_image, start_berthd, wait_port  # noqa: E402
from registry_bench import serve_cmd, stop, upstream_registry  # noqa: E402

REPO = "bench/img"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FETCHED = re.compile(r"proxy: fetched \S+, (\d+) bytes, in ([\d.]+) s \(\d+ MB/s; writing and hashing ([\d.]+) s\); "
                     r"kept ([\d.]+) s after release")


def start_proxy(root: str, upstream: str, wrap: list[str] | None = None, code: str | None = None,
                log: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A pull-through cache on ``root``; ``code``: the checkout whose ``berth`` to run (default: this
    one); ``log``: a file for its INFO log (one line per blob fetched, with its timings)."""
    port = free_port()
    err = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child holds it
    p = subprocess.Popen([*(wrap or [sys.executable]), *serve_cmd(root, port, upstream,
                                                                  level="INFO" if log else "WARNING")],
                         stdout=subprocess.DEVNULL, stderr=err, cwd=code or ROOT)
    if log:
        err.close()  # type: ignore[union-attr]
    wait_port(port)
    return p, f"http://127.0.0.1:{port}"


async def _layer_digests(base: str) -> list[tuple[str, int]]:
    async with aiohttp.ClientSession() as s:
        accept = "application/vnd.docker.distribution.manifest.v2+json,application/vnd.oci.image.manifest.v1+json"
        async with s.get(f"{base}/v2/{REPO}/manifests/1", headers={"Accept": accept}) as r:
            r.raise_for_status()
            m = await r.json(content_type=None)
    return [(x["digest"], int(x["size"])) for x in m["layers"]]


async def _fetch_all(base: str, layers: list[tuple[str, int]], parallel: int = 3) -> float:
    """Seconds to read every layer blob from ``base`` (``parallel`` at once), bytes discarded."""
    sem = asyncio.Semaphore(parallel)

    async def one(s: aiohttp.ClientSession, digest: str, size: int) -> None:
        async with sem, s.get(f"{base}/v2/{REPO}/blobs/{digest}") as r:
            r.raise_for_status()
            got = 0
            async for chunk in r.content.iter_chunked(1 << 20):
                got += len(chunk)
            if got != size:
                raise RuntimeError(f"{digest}: {got} of {size} bytes")

    t0 = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600), auto_decompress=False) as s:
        await asyncio.gather(*(one(s, d, n) for d, n in layers))
    return time.perf_counter() - t0


def fetch_all(base: str, layers: list[tuple[str, int]]) -> float:
    return asyncio.run(_fetch_all(base, layers))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_pull_phases(client: docker.DockerClient, ref: str, pids: dict[str, int]) -> dict[str, float]:
    """Seconds from the request to: the first byte of a layer, the last layer downloaded (verified,
    fsynced), the end of the pull; and the CPU seconds each process in ``pids`` spent meanwhile."""
    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
    t0 = time.perf_counter()
    first = last_dl = 0.0
    for ev in client.api.pull(ref, tag="1", stream=True, decode=True):
        now = time.perf_counter() - t0
        if "error" in ev:
            raise RuntimeError(f"pull of {ref} failed: {ev}")
        st = ev.get("status", "")
        if st == "Downloading" and not first:
            first = now
        elif st == "Download complete":
            last_dl = now
    end = time.perf_counter() - t0
    cpu = {f"cpu {k}": cpu_seconds(p) - cpu0[k] for k, p in pids.items()}
    client.api.remove_image(f"{ref}:1", force=True)
    return {"first byte": first, "downloads done": last_dl, "after downloads": end - last_dl, "total": end, **cpu}


def med(xs: list[float]) -> str:
    return f"{statistics.median(xs):6.2f} s (min {min(xs):.2f}, max {max(xs):.2f})"


def profile_cold(root: str, upstream_url: str, layers: list[tuple[str, int]]) -> None:
    prof = os.path.join(root, "proxy.prof")
    p, url = start_proxy(os.path.join(root, "prof-cache"), upstream_url,
                         [sys.executable, "-m", "cProfile", "-o", prof])
    try:
        secs = fetch_all(url, layers)
    finally:
        stop(p)
        shutil.rmtree(os.path.join(root, "prof-cache"), ignore_errors=True)
    out = io.StringIO()
    st = pstats.Stats(prof, stream=out)
    # Only what serving costs: the process's start-up (imports, bcrypt's dummy hash, TLS defaults) is left out.
    st.sort_stats("tottime").print_stats(r"aiohttp|berth/|asyncio|_socket|epoll|posix|bytes|hashlib|_thread|_queue", 14)
    print(f"\ncold fetch under cProfile: {secs:.2f} s; top functions by own time (proxy's event loop thread):")
    body = out.getvalue()
    print(body[body.find("   ncalls"):].rstrip())
    if shutil.which("strace"):
        p, url = start_proxy(os.path.join(root, "strace-cache"), upstream_url)
        trace = os.path.join(root, "strace.txt")
        s = subprocess.Popen(["strace", "-c", "-f", "-o", trace, "-p", str(p.pid)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        try:
            secs = fetch_all(url, layers)
        finally:
            s.send_signal(signal.SIGINT)
            s.wait(10)
            stop(p)
            shutil.rmtree(os.path.join(root, "strace-cache"), ignore_errors=True)
        with open(trace) as f:
            lines = f.read().splitlines()
        print(f"\ncold fetch under strace -c -f: {secs:.2f} s; proxy syscalls (top 10 by time):")
        print("\n".join(lines[:12]))
        print(lines[-1])


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = tempfile.mkdtemp(prefix="berth-bench-regbd-", dir="/var/tmp")
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {}
    try:
        data, size = make_image(args.mb)
        mb = size / 1e6
        with upstream_registry(root, args.far) as (upstream_host, upstream_pid):
            upstream_url = f"http://{upstream_host}"
            ref = f"{upstream_host}/{REPO}"
            direct = start_berthd(os.path.join(root, "direct"), procs, ["--insecure-registry", upstream_host])
            list(direct.api.load_image(data))
            direct.api.tag("bench:1", ref, "1")
            out = list(direct.api.push(ref, tag="1", stream=True, decode=True))
            if any("error" in x for x in out):
                raise RuntimeError(f"push failed: {out}")
            direct.api.remove_image(direct.api.inspect_image("bench:1")["Id"], force=True)
            layers = asyncio.run(_layer_digests(upstream_url))
            wire = sum(n for _, n in layers) / 1e6
            print(f"image: {mb:.0f} MB of layer data, {wire:.0f} MB compressed in {len(layers)} blobs; "
                  f"upstream {'far (network namespace)' if args.far else 'on loopback'}; {args.rounds} rounds")

            fetch: dict[str, list[float]] = {"direct": [], "cold": [], "warm": []}
            if args.baseline:
                fetch["cold (baseline)"], fetch["warm (baseline)"] = [], []
            log = os.path.join(root, "proxy.log")
            proxy_cpu: dict[str, list[float]] = {}
            pull: dict[str, list[dict[str, float]]] = {"direct": [], "cold": [], "warm": []}
            for r in range(args.rounds):
                fetch["direct"].append(fetch_all(upstream_url, layers))
                for label, code in [("", None)] + ([(" (baseline)", args.baseline)] if args.baseline else []):
                    cache = os.path.join(root, f"fcache{r}")
                    p, url = start_proxy(cache, upstream_url, code=code, log=None if code else log)
                    try:
                        c0 = cpu_seconds(p.pid)
                        fetch["cold" + label].append(fetch_all(url, layers))
                        proxy_cpu.setdefault("cold" + label, []).append(cpu_seconds(p.pid) - c0)
                        fetch["warm" + label].append(fetch_all(url, layers))
                    finally:
                        stop(p)
                        shutil.rmtree(cache, ignore_errors=True)
                pull["direct"].append(timed_pull_phases(direct, ref, {"upstream": upstream_pid,
                                                                      "berthd": procs[0].pid}))
                cache = os.path.join(root, f"pcache{r}")
                p, url = start_proxy(cache, upstream_url)
                mroot = os.path.join(root, f"mirror{r}")
                client = start_berthd(mroot, procs, ["--registry-mirror", f"{upstream_host}={url}"])
                try:
                    pids = {"upstream": upstream_pid, "proxy": p.pid, "berthd": procs[-1].pid}
                    pull["cold"].append(timed_pull_phases(client, ref, pids))
                    pull["warm"].append(timed_pull_phases(client, ref, pids))
                finally:
                    stop(procs.pop())
                    stop(p)
                    shutil.rmtree(cache, ignore_errors=True)
                    shutil.rmtree(mroot, ignore_errors=True)
            print(f"\nfetch of the {wire:.0f} MB of blobs by a plain client (no berthd), median (min, max):")
            for k, xs in fetch.items():
                cpu = f"; proxy CPU {statistics.median(proxy_cpu[k]):.2f} s" if k in proxy_cpu else ""
                print(f"  {k:16} {med(xs)}  {wire / statistics.median(xs):6.1f} MB/s{cpu}")
            with open(log) as f:
                rows = [tuple(float(x) for x in m.groups()) for m in FETCHED.finditer(f.read())]
            if rows:
                per_round = len(rows) / args.rounds
                total, busy, kept = (sum(r[i] for r in rows) / args.rounds for i in (1, 2, 3))
                print(f"  cold, the proxy's own log ({per_round:.0f} blobs a round, summed, mean of rounds): "
                      f"upstream fetch to verified {total:.2f} s, of it writing + hashing (worker thread) "
                      f"{busy:.2f} s; fsync + rename after release {kept:.2f} s")
            print("\ndocker pull by berthd, medians of the phases (seconds from the request):")
            print(f"  {'':7} {'first byte':>10} {'downloads done':>15} {'after downloads':>16} {'total':>8}"
                  f"   CPU s: {'upstream':>8} {'proxy':>6} {'berthd':>6}")
            for k, rows in pull.items():
                cols = {c: statistics.median(row[c] for row in rows) for c in rows[0]}
                print(f"  {k:7} {cols['first byte']:10.2f} {cols['downloads done']:15.2f} "
                      f"{cols['after downloads']:16.2f} {cols['total']:8.2f}          "
                      f"{cols['cpu upstream']:8.2f} {cols.get('cpu proxy', 0):6.2f} {cols['cpu berthd']:6.2f}")
            result = {"fetch": fetch, "pull": pull, "image_mb": mb, "wire_mb": wire, "far": args.far}
            if args.profile:
                profile_cold(root, upstream_url, layers)
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(root, ignore_errors=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--far", action="store_true", help="upstream in a netns behind netem delay and rate")
    ap.add_argument("--profile", action="store_true", help="also cProfile and strace a cold fetch")
    ap.add_argument("--baseline", default="", help="a checkout (e.g. the main worktree) whose proxy to run "
                    "too, interleaved, for a same-run before/after of the plain-client fetch")
    run(ap.parse_args())


if __name__ == "__main__":
    main()
