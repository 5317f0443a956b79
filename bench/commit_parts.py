#!/usr/bin/env python3
"""Where the time of a ``docker commit`` goes, component by component, in-process (no daemon):
a container upper directory holding 10,000 changed ``.py`` files (as the layer benchmark's
commit makes them) is turned into a layer, the way ``ImageService.commit_layer`` does it.

    sudo .venv/bin/python bench/commit_parts.py [--runs 3] [--files 10000]

Each step is timed on the same input: writing the diff tar (walking the upper dir), copying it
while hashing (the old re-spool), hashing it where it lies, extracting it as a layer (tar-split
included, synced), for each count of extraction threads given.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from layer_assets import SITE, build_all  # noqa: E402

from berth.db import open_db  # noqa: E402
from berth.fsutil import remove_tree, syncfs  # noqa: E402
from berth.images.archive import hash_range, spool_uncompressed  # noqa: E402
from berth.layers import diff  # noqa: E402
from berth.layers.drivers import OverlayDriver  # noqa: E402
from berth.layers.store import Extracted, LayerStore  # noqa: E402
from berth.layers.tarapply import apply_tar  # noqa: E402


def make_upper(site_tar: str, upper: str, files: int, scratch: str) -> None:
    """An overlay upper dir as copy-up leaves it: the changed files and their parent dirs."""
    src = os.path.join(scratch, "site")
    os.mkdir(src)
    apply_tar(site_tar, src, "plain", io.BytesIO())
    n = 0
    for dirpath, dirnames, filenames in os.walk(os.path.join(src, SITE)):
        dirnames.sort()
        rel = os.path.relpath(dirpath, src)
        for name in sorted(filenames):
            if n >= files or not name.endswith(".py") or os.path.islink(os.path.join(dirpath, name)):
                continue
            os.makedirs(os.path.join(upper, rel), exist_ok=True)
            with open(os.path.join(dirpath, name), "rb") as f:
                data = f.read()
            with open(os.path.join(upper, rel, name), "wb") as f:
                f.write(b"# changed\n" + data)
            n += 1
    shutil.rmtree(src)


def discard(store: LayerStore, ex: object) -> None:
    """Remove a layer now (the store's discard deletes in a background thread, which would run
    during the next sample)."""
    cache_id = ex.cache_id  # type: ignore[attr-defined]
    remove_tree(os.path.dirname(store.driver.layer_path(cache_id)))
    os.unlink(os.path.join(store.split_dir, cache_id + ".gz"))
    syncfs(store.split_dir)


def write_tar(upper: str, tar: str) -> None:
    with open(tar, "wb") as f:
        diff.write_layer_tar_overlay(upper, [], f)


def spool_copy(src: str, dst: str) -> None:
    with open(src, "rb") as f:
        spool_uncompressed(f, dst)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--threads", default="", help="extraction threads to compare, e.g. 1,2,4")
    args = ap.parse_args()
    site = build_all()["five"].layers[1]
    root = tempfile.mkdtemp(prefix="berth-bench-commit-", dir="/var/tmp")
    samples: dict[str, list[float]] = {}
    try:
        upper = os.path.join(root, "upper")
        os.mkdir(upper)
        make_upper(site.path, upper, args.files, root)
        syncfs(upper)
        conn = open_db(os.path.join(root, "db"))
        store = LayerStore(conn, os.path.join(root, "layers"), OverlayDriver(os.path.join(root, "overlay")))
        print(f"load average {os.getloadavg()[0]:.1f}; {args.files} files", flush=True)
        threads = [int(x) for x in args.threads.split(",")] if args.threads else [store.extract_threads]
        tar = os.path.join(root, "diff.tar")
        size = 0
        for _ in range(args.runs):
            samples.setdefault("1 write diff tar", []).append(timed(partial(write_tar, upper, tar)))
            size = os.path.getsize(tar)
            samples.setdefault("2 copy+hash (the old re-spool)", []).append(
                timed(partial(spool_copy, tar, tar + ".v")))
            os.unlink(tar + ".v")
            samples.setdefault("3 hash in place", []).append(timed(partial(hash_range, tar, 0, size)))
            d_id = hash_range(tar, 0, size)
            for n in threads:
                store.extract_threads = n
                exs: list[Extracted | None] = []
                samples.setdefault(f"4 extract as layer, threads={n}", []).append(
                    timed(lambda: exs.append(store.extract(tar, d_id, None))))  # noqa: B023 - called at once
                discard(store, exs[-1])
            os.unlink(tar)
        print(f"diff tar {size / 1e6:.1f} MB")
        for k in sorted(samples):
            s = samples[k]
            print(f"  {k:38} {statistics.median(s):6.2f} s  ({min(s):.2f}–{max(s):.2f})")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
