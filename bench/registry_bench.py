"""Pull a ~200 MB image through Berth's pull-through cache (`berth registry serve --proxy-remote-url`)
with berthd's `--registry-mirror HOST=URL`: cold (empty cache) and warm, against pulling from the
upstream directly; distribution's proxy mode (Debian `docker-registry`) in the same run when installed.

    sudo .venv/bin/python bench/registry_bench.py [--mb 200] [--rounds 3] [--far]

Each round starts the caches on fresh roots, so every cold pull is really cold. Reports the median and
the spread (min..max) of the rounds, and the ratios the registry issue asks for: cold within 1.2x of
direct, warm at least 2x faster than cold. Everything runs on loopback in a private temp root, or with
``--far`` the upstream sits in a network namespace made for the run (bench/far_upstream.py: 20 ms each
way, 200 Mbit/s), which is what a mirror is for: on loopback "far" and "near" are the same distance.
bench/registry_breakdown.py splits the time into its parts.

First, `docker push` of the image, held by a berthd, to that berthd's own registry (`berthd
--registry-addr`): the first push makes the layers' gzip form once; the median of pushes to new
repositories after it is the figure (goal: under 1 s, every layer "Layer already exists").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

import aiohttp
import docker

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from push_pull import free_port, make_image, start_berthd, wait_port  # noqa: E402


def serve_cmd(root: str, port: int, upstream: str | None, host: str = "127.0.0.1",
              level: str = "WARNING") -> list[str]:
    cmd = ["-m", "berth.registry", "serve", "--addr", f"{host}:{port}", "--root", root, "--log-level", level]
    if upstream:
        cmd += ["--proxy-remote-url", upstream]
    return cmd


def rtt_ms(base: str) -> float:
    """The best of 5 ``GET /v2/`` on one connection: one request's round trip."""
    async def go() -> float:
        best = 1e9
        async with aiohttp.ClientSession() as s:
            for _ in range(5):
                t0 = time.perf_counter()
                async with s.get(f"{base}/v2/") as r:
                    await r.read()
                best = min(best, time.perf_counter() - t0)
        return best * 1000
    return asyncio.run(go())


@contextlib.contextmanager
def upstream_registry(root: str, far: bool) -> Iterator[tuple[str, int]]:
    """A plain Berth registry as the upstream: on loopback, or far (netns + veth + netem)."""
    if far:
        from far_upstream import FarNetwork

        with FarNetwork() as net:
            procs = []
            try:
                procs = net.serve(lambda host, port: [sys.executable,
                                                      *serve_cmd(f"{root}/upstream", port, None, host)])
                print(f"far upstream: {'netem' if net.netem else 'tbf + delay relay'}, {net.delay} each way, "
                      f"{net.rate}; GET /v2/ takes {rtt_ms(f'http://{net.ns_addr}:5000'):.0f} ms")
                yield f"{net.ns_addr}:5000", procs[0].pid
            finally:
                for p in reversed(procs):
                    stop(p)
    else:
        port = free_port()
        p = subprocess.Popen([sys.executable, *serve_cmd(f"{root}/upstream", port, None)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            yield f"127.0.0.1:{port}", p.pid
        finally:
            stop(p)


def stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def berth_proxy(root: str, upstream: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "berth.registry", "serve", "--addr", f"127.0.0.1:{port}",
                          "--root", root, "--proxy-remote-url", upstream, "--log-level", "WARNING"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p, f"http://127.0.0.1:{port}"


def distribution_proxy(root: str, upstream: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cfg = os.path.join(root + ".yml")
    with open(cfg, "w") as f:
        f.write(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n"
                f"http:\n  addr: 127.0.0.1:{port}\nlog:\n  level: error\nproxy:\n  remoteurl: {upstream}\n")
    p = subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p, f"http://127.0.0.1:{port}"


def timed_pull(client: docker.DockerClient, ref: str) -> float:
    t0 = time.perf_counter()
    out = list(client.api.pull(ref, tag="1", stream=True, decode=True))
    secs = time.perf_counter() - t0
    errors = [x for x in out if "error" in x]
    if errors:
        raise RuntimeError(f"pull of {ref} failed: {errors}")
    client.api.remove_image(f"{ref}:1", force=True)
    return secs


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):6.2f} s  (min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})"


def timed_push(client: docker.DockerClient, sock: str, ref: str) -> tuple[float, list[str]]:
    """``docker push`` (the CLI when installed, else the SDK): seconds, and each layer's final status."""
    t0 = time.perf_counter()
    docker_cli = shutil.which("docker")
    if docker_cli:
        env = dict(os.environ, DOCKER_HOST=f"unix://{sock}")
        r = subprocess.run([docker_cli, "push", ref], capture_output=True, text=True, env=env, timeout=600)
        secs = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(f"push of {ref} failed: {r.stderr}")
        last = dict(re.findall(r"^([0-9a-f]{12}): (.+)$", r.stdout, re.M))
    else:
        repo, _, tag = ref.rpartition(":")
        out = list(client.api.push(repo, tag=tag, stream=True, decode=True))
        secs = time.perf_counter() - t0
        if any("error" in x for x in out):
            raise RuntimeError(f"push of {ref} failed: {out}")
        last = {x["id"]: x["status"] for x in out if "id" in x and "status" in x}
    return secs, sorted(set(last.values()))


def engine_push(args: argparse.Namespace, root: str, data: bytes, mb: float) -> None:
    """``docker push`` of an image berthd holds to its own registry (``berthd --registry-addr``)."""
    procs: list[subprocess.Popen[bytes]] = []
    port = free_port()
    broot = os.path.join(root, "engine-registry")
    try:
        client = start_berthd(broot, procs, ["--registry-addr", f"127.0.0.1:{port}"])
        wait_port(port)
        sock = os.path.join(broot, "b.sock")
        list(client.api.load_image(data))
        refs = [f"127.0.0.1:{port}/bench/r{i}:1" for i in range(args.rounds + 1)]
        for ref in refs:
            repo, _, tag = ref.rpartition(":")
            client.api.tag("bench:1", repo, tag)
        first, statuses = timed_push(client, sock, refs[0])  # makes push's gzip form of each layer once
        times = []
        for ref in refs[1:]:  # a new repository each time: nothing is linked there yet
            secs, st = timed_push(client, sock, ref)
            times.append(secs)
            statuses = sorted(set(statuses) | set(st))
        print(f"engine-backed registry push of {mb:.0f} MB held by berthd ({args.rounds} rounds):")
        print(f"  {'first push (gzips layers)':26} {first:6.2f} s")
        print(f"  {'push to a new repository':26} {spread(times)}  (goal < 1 s)")
        print(f"  layer statuses: {', '.join(statuses)}")
        if args.json:
            with open(args.json + ".engine-push.json", "w") as f:
                json.dump({"image_mb": mb, "first": first, "seconds": times, "statuses": statuses}, f, indent=2)
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(broot, ignore_errors=True)


def run(args: argparse.Namespace) -> None:
    root = tempfile.mkdtemp(prefix="berth-bench-reg-", dir="/var/tmp")
    procs: list[subprocess.Popen[bytes]] = []
    cleanups: list[Callable[[], object]] = []
    try:
        data, size = make_image(args.mb)
        mb = size / 1e6
        print(f"image: {mb:.0f} MB of layer data in 5 layers; {args.rounds} rounds; upstream "
              f"{'far (network namespace)' if args.far else 'on loopback'}")
        if not args.far:
            engine_push(args, root, data, mb)
        if args.engine_push_only:
            return
        upstream = contextlib.ExitStack()
        upstream_host, _pid = upstream.enter_context(upstream_registry(root, args.far))
        cleanups.append(upstream.close)
        upstream_url = f"http://{upstream_host}"
        ref = f"{upstream_host}/bench/img"

        direct = start_berthd(os.path.join(root, "direct"), procs, ["--insecure-registry", upstream_host])
        list(direct.api.load_image(data))
        direct.api.tag("bench:1", ref, "1")
        out = list(direct.api.push(ref, tag="1", stream=True, decode=True))
        if any("error" in x for x in out):
            raise RuntimeError(f"push failed: {out}")
        direct.api.remove_image(direct.api.inspect_image("bench:1")["Id"], force=True)

        caches: list[tuple[str, Callable[[str, str], tuple[subprocess.Popen[bytes], str]]]] = [
            ("berth proxy", berth_proxy)]
        if shutil.which("docker-registry"):
            caches.append(("distribution proxy", distribution_proxy))
        else:
            print("docker-registry: not installed, distribution's proxy mode skipped")

        times: dict[str, list[float]] = {"direct": []}
        for label, _ in caches:
            times[f"{label} cold"], times[f"{label} warm"] = [], []
        for r in range(args.rounds):
            times["direct"].append(timed_pull(direct, ref))
            for i, (label, start) in enumerate(caches):
                cache_root = os.path.join(root, f"cache{i}-{r}")
                proxy, url = start(cache_root, upstream_url)
                mirror_root = os.path.join(root, f"mirror{i}-{r}")
                client = start_berthd(mirror_root, procs, ["--registry-mirror", f"{upstream_host}={url}"])
                try:
                    times[f"{label} cold"].append(timed_pull(client, ref))
                    times[f"{label} warm"].append(timed_pull(client, ref))
                finally:
                    stop(procs.pop())  # this round's berthd
                    stop(proxy)
                    shutil.rmtree(cache_root, ignore_errors=True)
                    shutil.rmtree(mirror_root, ignore_errors=True)
        for name, xs in times.items():
            print(f"  {name:26} {spread(xs)}  {mb / statistics.median(xs):6.1f} MB/s")
        med = {k: statistics.median(v) for k, v in times.items()}
        for label, _ in caches:
            cold, warm = med[f"{label} cold"], med[f"{label} warm"]
            # Paired per round too: each round's pulls ran back to back, so a ratio within a round
            # is less moved by load from outside the bench than a ratio of medians.
            pc = statistics.median(c / d for c, d in zip(times[f"{label} cold"], times["direct"], strict=True))
            pw = statistics.median(c / w for c, w in zip(times[f"{label} cold"], times[f"{label} warm"], strict=True))
            print(f"{label}: cold/direct {cold / med['direct']:.2f}x (goal <= 1.2x), "
                  f"cold/warm {cold / warm:.2f}x (goal >= 2x); median of per-round ratios: "
                  f"{pc:.2f}x, {pw:.2f}x")
        print("(each pull includes berthd verifying, decompressing and extracting every layer)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"image_mb": mb, "seconds": times}, f, indent=2)
    finally:
        for p in reversed(procs):
            stop(p)
        for c in cleanups:
            c()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default="")
    ap.add_argument("--far", action="store_true",
                    help="the upstream in a network namespace behind a veth pair with 20 ms each way and "
                         "200 Mbit/s (netem, or tbf and a delaying relay): a far registry, as a mirror is for")
    ap.add_argument("--engine-push-only", action="store_true",
                    help="only the push to berthd's own registry (berthd --registry-addr)")
    run(ap.parse_args())


if __name__ == "__main__":
    main()
