#!/usr/bin/env python3
"""Layers at real-world scale: load, save, push (cold and warm), pull, commit and
``berth check --verify-data`` of a debian:bookworm image, a five-layer image on top of it and a
50,000-file layer, on berthd and, in the same run, on dockerd and podman when installed.

    sudo .venv/bin/python bench/layers_bench.py [--runs 3] [--engines berth,dockerd,podman] [--json F]

Images are built offline once and cached under /var/tmp/berth-bench-cache (see layer_assets.py).
Every engine, registry and data root is private to the run, under /var/tmp/berth-bench-layers-*,
and stopped by PID / removed at the end. Figures are medians of --runs samples (min–max shown);
a cold push (the daemon compresses the layers for the first time) is one sample per engine.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from engines import BerthEngine, DockerdEngine, Engine, PodmanEngine, Registry, RssPeak  # noqa: E402
from layer_assets import BenchImage, build_all  # noqa: E402
from run_bench import BenchError  # noqa: E402

COMMIT_CMD = ("find /usr/lib/python3/dist-packages -name '*.py' -type f | head -n 10000 | "
              "xargs sed -i -e '1s/^/# changed\\n/' && test \"$(find /usr/lib/python3/dist-packages -newer "
              "/etc/hostname -name '*.py' | wc -l)\" -ge 10000")


class Results:
    def __init__(self) -> None:
        self.samples: dict[tuple[str, str], list[float]] = {}  # (operation, engine) -> seconds
        self.errors: list[str] = []
        self.extra: dict[str, float] = {}

    def add(self, op: str, engine: str, secs: float) -> None:
        self.samples.setdefault((op, engine), []).append(secs)

    def median(self, op: str, engine: str) -> float | None:
        s = self.samples.get((op, engine))
        return statistics.median(s) if s else None

    def rounds(self, op: str, engines: list[Engine], runs: int, once: Callable[[Engine], float]) -> None:
        """``runs`` rounds of ``once`` on every engine in turn; an engine that fails drops out of ``op``."""
        failed: set[str] = set()
        for _ in range(runs):
            for eng in engines:
                if eng.label in failed:
                    continue
                try:
                    self.add(op, eng.label, once(eng))
                except Exception as e:  # one failed figure must not lose the others
                    failed.add(eng.label)
                    self.errors.append(f"{eng.label} {op}: {e}")
                    print(f"  {eng.label:8} {op:30} FAILED: {str(e)[-300:]}", flush=True)
        for eng in engines:
            s = self.samples.get((op, eng.label))
            if s and eng.label not in failed:
                print(f"  {eng.label:8} {op:30} {statistics.median(s):8.2f} s  ({min(s):.2f}–{max(s):.2f}, "
                      f"n={len(s)})", flush=True)


def extraction_rates(images: dict[str, BenchImage], res: Results, runs: int, root: str,
                     threads: list[int], plain_parent: bool) -> None:
    """In-process ``apply_tar`` (no daemon, no I/O of the archive): entries per second per layer,
    for each count of extraction threads, the variants interleaved run by run (the load drifts).
    Layers are extracted where the store puts them, in a directory below a ``chattr +T`` parent
    (``spread_children``); "plain parent" is the same below a parent without it (as before)."""
    from berth.fsutil import remove_tree, syncfs
    from berth.layers.drivers import spread_children
    from berth.layers.tarapply import apply_tar

    spread = os.path.join(root, "spread")
    plain = os.path.join(root, "plain")
    os.makedirs(spread)
    os.makedirs(plain)
    spread_children(spread)
    variants = [(f"threads={n}", spread, n) for n in threads] + [("plain parent", plain, 1)] * plain_parent

    layers = [(name, layer) for name, key, i in (("debian", "debian", 0), ("site-packages", "five", 1),
                                                 ("fifty-k", "fiftyk", 0)) if key in images
              for layer in [images[key].layers[i]]]
    for name, layer in layers:
        times: dict[str, list[float]] = {v: [] for v, _, _ in variants}
        cpu: dict[str, list[float]] = {v: [] for v, _, _ in variants}
        for _ in range(runs):
            for label, parent, n in variants:
                d = tempfile.mkdtemp(dir=parent)
                t0, c0 = time.perf_counter(), os.times()
                apply_tar(layer.path, d, "overlay", io.BytesIO(), threads=n)
                syncfs(d)
                c1 = os.times()
                times[label].append(time.perf_counter() - t0)
                cpu[label].append(c1.system - c0.system)
                remove_tree(d)
                syncfs(root)  # the removal's writeback is not charged to the next sample
        for i, (label, _, _) in enumerate(variants):
            med = statistics.median(times[label])
            res.extra[f"extract {name} entries/s" + ("" if i == 0 else f" {label}")] = layer.entries / med
            print(f"  extract {name:14} {label:13} {layer.entries:6d} entries  {med:6.2f} s  "
                  f"({min(times[label]):.2f}–{max(times[label]):.2f})  {layer.entries / med:8.0f} entries/s  "
                  f"{layer.size / med / 1e6:6.1f} MB/s  sys {statistics.median(cpu[label]):.2f} s  "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)


def per_image(engines: list[Engine], key: str, img: BenchImage, res: Results, runs: int,
              registry: Callable[[str], Registry], ops: set[str]) -> None:
    """Each operation on every engine in turn, run after run: the machine's load drifts, and
    interleaving gives every engine the same share of it. ``ops``: which to time (the image is
    loaded, and pushed before a pull, either way)."""
    def load(eng: Engine) -> float:
        eng.rmi_image(img.ref)
        return eng.timed("load", "-i", img.save_path)
    res.rounds(f"load {key}", engines, runs if "load" in ops else 1, load)
    if "load" not in ops:
        for eng in engines:
            res.samples.pop((f"load {key}", eng.label), None)
    if "save" in ops:
        res.rounds(f"save {key}", engines, runs, lambda eng: eng.timed("save", img.ref, devnull=True))
    if not {"push", "pull"} & ops:
        return
    colds = {eng.label: registry(eng.label) for eng in engines}
    refs = {eng.label: f"{colds[eng.label].addr}/bench/{key}:1" for eng in engines}
    try:
        def cold(eng: Engine) -> float:
            eng.run("tag", img.ref, refs[eng.label])
            return eng.push(refs[eng.label])
        res.rounds(f"push {key} (cold)", engines, 1, cold)
        if "push" not in ops:
            for eng in engines:
                res.samples.pop((f"push {key} (cold)", eng.label), None)

        def warm(eng: Engine) -> float:
            reg = registry(eng.label)
            wref = f"{reg.addr}/bench/{key}:1"
            try:
                eng.run("tag", img.ref, wref)
                return eng.push(wref)
            finally:
                eng.rmi(wref)
                reg.stop()
        if "push" in ops:
            res.rounds(f"push {key} (warm)", engines, runs, warm)
        for eng in engines:
            eng.rmi(img.ref)

        def pull(eng: Engine) -> float:
            ref = refs[eng.label]
            eng.rmi_image(ref)  # every layer of the image leaves (those shared with debian stay)
            if eng.pid is not None and key == "five":
                with RssPeak(eng.pid) as rss:
                    t = eng.pull(ref)
                res.add("peak RSS MB, pull five", eng.label, rss.peak_mb)
                return t
            return eng.pull(ref)
        if "pull" in ops:
            res.rounds(f"pull {key}", engines, runs, pull)
            for eng in engines:
                if isinstance(eng, BerthEngine):
                    print_pull_timing(eng, key)
        for eng in engines:
            try:
                eng.run("tag", refs[eng.label], img.ref)
                eng.rmi(refs[eng.label])
            except BenchError as e:
                res.errors.append(f"{eng.label}: re-tag after pull: {e}")
    finally:
        for reg in colds.values():
            reg.stop()


def print_pull_timing(eng: BerthEngine, key: str) -> None:
    """berthd's per-phase line for each pull since the last call (``berth.distribution.phases``)."""
    try:
        with open(eng.daemon.log_path, errors="replace") as f:
            lines = [ln.split("pull timing ", 1)[1].rstrip() for ln in f if "pull timing " in ln]
    except OSError:
        return
    for ln in lines[_timing_seen.get(eng.pid, 0):]:
        print(f"  berthd phases, pull {key}: {ln}", flush=True)
    _timing_seen[eng.pid] = len(lines)


_timing_seen: dict[int | None, int] = {}  # berthd pid -> pull timing lines already printed


def commit_rounds(engines: list[Engine], ref: str, res: Results, runs: int) -> None:
    def commit(eng: Engine) -> float:
        name = f"bench-commit-{time.monotonic_ns()}"
        eng.run("run", "--name", name, "--network", "none", ref, "sh", "-c", COMMIT_CMD)
        try:
            t0 = time.perf_counter()
            iid = eng.run("commit", name, f"bench/committed:{name}")
            dt = time.perf_counter() - t0
            eng.rmi(iid.strip())
            return dt
        finally:
            subprocess.run(eng.cmd("rm", "-f", name), capture_output=True)
    res.rounds("commit (10,000 files)", engines, runs, commit)


def report(res: Results, engines: list[str]) -> None:
    print("\n== medians in seconds (ratio: engine / berth; above 1 means berth is faster)")
    ops = sorted({op for op, _ in res.samples}, key=lambda o: list(dict.fromkeys(op for op, _ in res.samples)).index(o))
    head = f"{'operation':32}" + "".join(f"{e:>10}" for e in engines) + "".join(f"{e + '/berth':>16}"
                                                                                 for e in engines[1:])
    print(head)
    for op in ops:
        row = f"{op:32}"
        for e in engines:
            m = res.median(op, e)
            row += f"{m:10.2f}" if m is not None else f"{'-':>10}"
        base = res.median(op, "berth")
        for e in engines[1:]:
            m = res.median(op, e)
            row += f"{m / base:15.2f}×" if m is not None and base else f"{'-':>16}"
        print(row)
    for k, v in res.extra.items():
        print(f"{k:40} {v:10.0f}")
    a, b = res.extra.get("extract debian entries/s"), res.extra.get("extract fifty-k entries/s")
    if a and b:
        print(f"per-entry extraction time, fifty-k vs debian: {a / b:.2f}× (target within 1.25×)")
    if res.errors:
        print("\nErrors:")
        for e in res.errors:
            print("  " + e)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--engines", default="berth,dockerd,podman")
    ap.add_argument("--images", default="debian,five,fiftyk")
    ap.add_argument("--registry", choices=["docker-registry", "berth"],
                    default="docker-registry" if shutil.which("docker-registry") else "berth")
    ap.add_argument("--json", default="")
    ap.add_argument("--threads", default="",
                    help="extraction threads to compare in-process, e.g. 1,2,4 (default: the store's)")
    ap.add_argument("--plain-parent", action="store_true",
                    help="also extract below a parent without chattr +T (the placement before)")
    ap.add_argument("--ops", default="", help="only these operations, e.g. extract,load,pull,commit")
    args = ap.parse_args()
    images = {k: v for k, v in build_all().items() if k in args.images.split(",")}
    root = tempfile.mkdtemp(prefix="berth-bench-layers-", dir="/var/tmp")
    res = Results()
    labels: list[str] = []
    print(f"registry: {args.registry}; runs: {args.runs}; load average {os.getloadavg()[0]:.1f}", flush=True)
    engines: list[Engine] = []
    try:
        from berth.layers.store import EXTRACT_THREADS
        threads = [int(x) for x in args.threads.split(",")] if args.threads else [EXTRACT_THREADS]
        ops = set(args.ops.split(",")) if args.ops else {"extract", "load", "save", "push", "pull", "commit", "check"}
        if "berth" in args.engines and "extract" in ops:
            extraction_rates(images, res, args.runs, root, threads, args.plain_parent)
        makers = {"berth": BerthEngine, "dockerd": DockerdEngine, "podman": PodmanEngine}
        for label in args.engines.split(","):
            if label == "dockerd" and not os.path.exists("/usr/sbin/dockerd") or \
                    label == "podman" and not shutil.which("podman"):
                print(f"{label}: not installed, skipped")
                continue
            os.makedirs(os.path.join(root, label))
            try:
                engines.append(makers[label](os.path.join(root, label)))
            except (BenchError, OSError) as e:
                res.errors.append(f"{label}: could not start: {e}")
        labels.extend(e.label for e in engines)
        n = 0

        def registry(label: str) -> Registry:
            nonlocal n
            n += 1
            return Registry(os.path.join(root, f"reg-{label}-{n}"), args.registry)

        for key, img in images.items():
            print(f"-- {key}", flush=True)
            per_image(engines, key, img, res, args.runs, registry, ops)
        if "five" in images and "commit" in ops:
            commit_rounds(engines, images["five"].ref, res, args.runs)
        for eng in list(engines):
            eng.stop()
            engines.remove(eng)
            if isinstance(eng, BerthEngine) and "check" in ops:  # offline, with every image of the run still stored
                res.rounds("check --verify-data", [eng], args.runs,
                           lambda e: _timed_check(e.data_root))  # type: ignore[attr-defined]
    except Exception as e:
        traceback.print_exc()
        res.errors.append(str(e))
    finally:
        for eng in engines:
            eng.stop()
        report(res, labels)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"samples": {f"{op}|{e}": s for (op, e), s in res.samples.items()},
                           "extra": res.extra, "errors": res.errors}, f, indent=1)
        shutil.rmtree(root, ignore_errors=True)
    return 1 if res.errors else 0


def _timed_check(data_root: str) -> float:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "berth.cli.main", "check", "--data-root", data_root, "--verify-data"],
                       capture_output=True)
    if p.returncode != 0:
        raise BenchError(p.stdout.decode()[-400:] + p.stderr.decode()[-400:])
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
