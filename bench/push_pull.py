"""Push and pull a ~200 MB image through berthd, to Berth's registry and to Debian's
docker-registry when installed; prints MB/s of image data (uncompressed layer bytes).

    sudo .venv/bin/python bench/push_pull.py [--mb 200]

The image has a few layers of random bytes (incompressible) and of text (compressible),
generated here. Everything runs on loopback in a private temp root and is cleaned up.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Any

import docker

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def make_image(total_mb: int) -> tuple[bytes, int]:
    """A docker-save tar: busybox base + layers alternating random and compressible data."""
    from berth.images.archive import SaveImage, write_save
    from berth.tools import mkbusybox

    with tarfile.open(fileobj=io.BytesIO(mkbusybox.build("/bin/busybox", "x:1"))) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        base = tf.extractfile(manifest[0]["Layers"][0]).read()  # type: ignore[union-attr]
    layers = [base]
    per = total_mb // 4
    words = b" ".join(b"container%d layer data" % i for i in range(200000))
    for i in range(4):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            data = os.urandom(per << 20) if i % 2 == 0 else (words * ((per << 20) // len(words) + 1))[: per << 20]
            ti = tarfile.TarInfo(f"data/layer{i}.bin")
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        layers.append(buf.getvalue())
    diff_ids = ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    out = io.BytesIO()
    write_save(out, [SaveImage("sha256:" + hashlib.sha256(cfg).hexdigest(), cfg, diff_ids, diff_ids,
                               [len(x) for x in layers], [("docker.io/library/bench:1", "bench:1")])],
               lambda cid, w: w.write(layers[diff_ids.index(cid)]))
    return out.getvalue(), sum(len(x) for x in layers)


def breakdown(save_tar: bytes, root: str) -> None:
    """Where push and pull time goes: each stage alone on the same bytes, in MB/s."""
    import gzip
    import sqlite3
    import zlib
    from concurrent.futures import ThreadPoolExecutor

    from berth.content import ContentStore
    from berth.distribution.push import _parallel_gzip

    with tarfile.open(fileobj=io.BytesIO(save_tar)) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        layers = [tf.extractfile(x).read() for x in manifest[0]["Layers"]]  # type: ignore[union-attr]
    total = sum(len(x) for x in layers) / 1e6
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    for x in layers:
        hashlib.sha256(x).digest()
    stages["sha256"] = time.perf_counter() - t0
    path = os.path.join(root, "breakdown.tar")
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for x in layers:
            f.write(x)
        f.flush()
        os.fsync(f.fileno())
    stages["disk write + fsync"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = [zlib.compress(x, 1) for x in layers]
    stages["gzip -1, one core"] = time.perf_counter() - t0
    # push's path: gzip members on every core into a content-store writer, which hashes as it
    # writes; finish() fsyncs and checks the digest (the blob is never committed, only timed)
    conn = sqlite3.connect(os.path.join(root, "breakdown.db"))
    content = ContentStore(conn, os.path.join(root, "breakdown-content"))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool, content.writer() as w:
        t0 = time.perf_counter()
        _parallel_gzip(path, w, pool)
        w.finish()
        stages["gzip -1, every core (berth push)"] = time.perf_counter() - t0
        with open(w.path, "rb") as f:
            gz = f.read()
    conn.close()
    t0 = time.perf_counter()
    with gzip.GzipFile(fileobj=io.BytesIO(gz)) as g:  # streamed, as the pull path reads it
        while g.read(1 << 20):
            pass
    stages["gunzip (one core)"] = time.perf_counter() - t0
    os.unlink(path)
    print(f"where the time goes ({total:.0f} MB; compressed {sum(len(x) for x in single) / 1e6:.0f} MB):")
    for name, secs in stages.items():
        print(f"  {name:34} {total / secs:8.1f} MB/s")


def start_berthd(root: str, procs: list[subprocess.Popen[bytes]],
                 extra: list[str] | None = None) -> docker.DockerClient:
    sock = os.path.join(root, "b.sock")
    procs.append(subprocess.Popen([sys.executable, "-m", "berth.daemon.main", "-H", f"unix://{sock}",
                                   "--data-root", f"{root}/data", "--exec-root", f"{root}/run",
                                   "--bridge", "none", "--iptables=false", "--network-pool", "0", *(extra or [])],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    client = docker.DockerClient(base_url=f"unix://{sock}", version="1.45", timeout=600)
    for _ in range(300):
        try:
            client.ping()
            return client
        except Exception:
            time.sleep(0.05)
    raise RuntimeError("berthd did not start")


def run(args: argparse.Namespace) -> None:
    root = tempfile.mkdtemp(prefix="berth-bench-pp-", dir="/var/tmp")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        data, size = make_image(args.mb)
        mb = size / 1e6
        print(f"image: {mb:.0f} MB of layer data in 5 layers")
        breakdown(data, root)
        registries: list[tuple[str, str]] = []
        port = free_port()
        procs.append(subprocess.Popen([sys.executable, "-m", "berth.registry", "serve", "--addr",
                                       f"127.0.0.1:{port}", "--root", f"{root}/berth-registry"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        registries.append(("berth registry", f"127.0.0.1:{port}"))
        if shutil.which("docker-registry"):
            port2 = free_port()
            cfg = os.path.join(root, "reg.yml")
            with open(cfg, "w") as f:
                f.write(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}/refreg\n"
                        f"http:\n  addr: 127.0.0.1:{port2}\nlog:\n  level: error\n")
            procs.append(subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            registries.append(("docker-registry (reference)", f"127.0.0.1:{port2}"))
        else:
            print("docker-registry: not installed, skipped")
        results: dict[str, Any] = {}
        for n, (label, addr) in enumerate(registries):
            wait_port(int(addr.split(":")[1]))
            # a fresh berthd each time: nothing cached from the previous push, no layer left to reuse
            client = start_berthd(os.path.join(root, f"berthd{n}"), procs)
            list(client.api.load_image(data))
            ref = f"{addr}/bench/img"
            client.api.tag("bench:1", ref, "1")
            t0 = time.perf_counter()
            out = list(client.api.push(ref, tag="1", stream=True, decode=True))
            t_push = time.perf_counter() - t0
            if any("error" in x for x in out):
                print(f"{label}: push failed: {[x for x in out if 'error' in x]}")
                continue
            iid = client.api.inspect_image("bench:1")["Id"]
            client.api.remove_image(iid, force=True)
            assert not client.api.images(all=True)
            t0 = time.perf_counter()
            out = list(client.api.pull(ref, tag="1", stream=True, decode=True))
            t_pull = time.perf_counter() - t0
            if any("error" in x for x in out):
                print(f"{label}: pull failed: {[x for x in out if 'error' in x]}")
                continue
            results[label] = {"push_s": t_push, "pull_s": t_pull, "push_MBps": mb / t_push, "pull_MBps": mb / t_pull}
            print(f"{label:30} push {t_push:6.2f} s  {mb / t_push:6.1f} MB/s   pull {t_pull:6.2f} s  "
                  f"{mb / t_pull:6.1f} MB/s")
        print("\n(push includes gzip-compressing every layer on all cores; pull includes verifying and extracting)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"image_mb": mb, "results": results}, f, indent=2)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--json", default="")
    run(ap.parse_args())


if __name__ == "__main__":
    main()
