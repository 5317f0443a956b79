"""The images of the layer benchmark, built offline and cached under /var/tmp.

- ``debian``: the debootstrap ``bookworm`` minbase rootfs as one layer (apt's downloaded .debs and
  package lists left out, as Docker's debian image leaves them out: ~121 MB, ~6,660 entries).
  debootstrap fetches packages from Debian's mirror, the one network source the machine has.
- ``five``: that layer plus four: a Python site-packages-like tree (30,000 small files), a few
  large binaries, deletions and whiteouts (whole packages, a directory made opaque, a binary), and
  a layer that rewrites 2,000 files and replaces a directory by a file.
- ``fiftyk``: one layer of 50,000 small files in 10-file directories.

Every layer tar and every ``docker save`` archive is deterministic (fixed seeds and mtimes), so a
rerun reuses the cache; each file is written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

CACHE = "/var/tmp/berth-bench-cache"
MIRROR = "http://deb.debian.org/debian"
MTIME = 1_700_000_000
SITE = "usr/lib/python3/dist-packages"
PACKAGES = 250  # x 3 subpackages x 40 modules = 30,000 files
EXCLUDES = ["./dev/*", "./proc/*", "./sys/*", "./var/cache/apt/archives/*.deb", "./var/lib/apt/lists/deb.*"]


@dataclass
class LayerTar:
    path: str
    diff_id: str
    size: int
    entries: int


@dataclass
class BenchImage:
    key: str
    ref: str  # fully qualified, so docker and podman name it alike
    save_path: str
    layers: list[LayerTar]


def _atomic(path: str, write: Callable[[io.BufferedWriter], None]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        write(f)  # type: ignore[arg-type]
    os.rename(tmp, path)


def _describe(path: str) -> LayerTar:
    """diff ID and entry count of a layer tar, cached beside it."""
    meta = path + ".json"
    if os.path.exists(meta) and os.path.getmtime(meta) >= os.path.getmtime(path):
        with open(meta) as f:
            d = json.load(f)
        return LayerTar(path, d["diff_id"], d["size"], d["entries"])
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    with tarfile.open(path) as tf:
        entries = sum(1 for _ in tf)
    d = {"diff_id": "sha256:" + h.hexdigest(), "size": os.path.getsize(path), "entries": entries}
    with open(meta, "w") as f:
        json.dump(d, f)
    return LayerTar(path, d["diff_id"], d["size"], d["entries"])


def debian_layer(cache: str) -> str:
    out = os.path.join(cache, "debian-bookworm-minbase.tar")
    if os.path.exists(out):
        return out
    rootfs = os.path.join(cache, "rootfs")
    if not os.path.exists(os.path.join(rootfs, "etc", "debian_version")):
        print(f"debootstrap --variant=minbase bookworm {rootfs} (once; cached)", flush=True)
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", rootfs, MIRROR], check=True,
                       stdout=subprocess.DEVNULL)
    cmd = ["tar", "--numeric-owner", "--format=gnu", "--sort=name"]
    cmd += [f"--exclude={x}" for x in EXCLUDES]
    subprocess.run(cmd + ["-C", rootfs, "-cf", out + ".tmp", "."], check=True)
    os.rename(out + ".tmp", out)
    return out


class _TarOut:
    def __init__(self, f: io.BufferedWriter) -> None:
        self.tf = tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.mtime = kind, mode, MTIME
        ti.uname = ti.gname = "root"
        return ti

    def dir(self, name: str) -> None:
        self.tf.addfile(self._info(name, tarfile.DIRTYPE, 0o755))

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        ti = self._info(name, tarfile.REGTYPE, mode)
        ti.size = len(data)
        self.tf.addfile(ti, io.BytesIO(data))

    def link(self, name: str, target: str, hard: bool = False) -> None:
        ti = self._info(name, tarfile.LNKTYPE if hard else tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.tf.addfile(ti)

    def close(self) -> None:
        self.tf.close()


def _source(rng: random.Random) -> bytes:
    words = ["def", "return", "self", "import", "value", "class", "None", "for", "in", "if", "data", "key"]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(rng.randint(3, 120))]
    return ("\n".join(lines) + "\n").encode()


def _site_paths() -> Iterator[tuple[int, int, str]]:
    for p in range(PACKAGES):
        for s in range(3):
            yield p, s, f"{SITE}/benchpkg{p:03d}/sub{s}"


def _site_packages(t: _TarOut) -> None:
    rng = random.Random(1)
    for d in ("usr", "usr/lib", "usr/lib/python3", SITE):
        t.dir(d)
    for p, s, d in _site_paths():
        if s == 0:
            t.dir(f"{SITE}/benchpkg{p:03d}")
        t.dir(d)
        for m in range(40):
            t.file(f"{d}/mod{m:02d}.py", _source(rng))
    for p in range(0, PACKAGES, 25):  # a few links, as wheels ship them
        t.link(f"{SITE}/benchpkg{p:03d}/alias.py", "sub0/mod00.py")
        t.link(f"{SITE}/benchpkg{p:03d}/same.py", f"{SITE}/benchpkg{p:03d}/sub1/mod01.py", hard=True)


def _binaries(t: _TarOut) -> None:
    rng = random.Random(2)
    for d in ("opt", "opt/bench", "opt/bench/bin"):
        t.dir(d)
    for i, mb in enumerate((24, 24, 12)):
        block = rng.randbytes(1 << 16)  # part noise, part repeats: compresses about 2:1 like a binary
        parts = [rng.randbytes(1 << 16) if k % 2 else block for k in range(mb * 16)]
        t.file(f"opt/bench/bin/tool{i}", b"".join(parts), 0o755)


def _deletions(t: _TarOut) -> None:
    for d in ("usr", "usr/share", "usr/lib", "usr/lib/python3", SITE, "opt", "opt/bench", "opt/bench/bin",
              "usr/share/locale"):
        t.dir(d)
    t.file("usr/share/.wh.man", b"")
    t.file("usr/share/locale/.wh..wh..opq", b"")
    t.file("usr/share/locale/README", b"locales removed\n")
    for p in range(0, PACKAGES, 12):  # whole packages gone, 120 files each
        t.file(f"{SITE}/.wh.benchpkg{p:03d}", b"")
    t.file("opt/bench/bin/.wh.tool2", b"")


def _rewrites(t: _TarOut) -> None:
    rng = random.Random(4)
    for d in ("usr", "usr/lib", "usr/lib/python3", SITE):
        t.dir(d)
    n = 0
    for p, s, d in _site_paths():
        if p % 12 == 0 or s != 1:
            continue
        if n == 0:
            t.file(f"{SITE}/benchpkg{p:03d}/sub2", b"a directory replaced by a file\n")
        t.dir(f"{SITE}/benchpkg{p:03d}")
        t.dir(d)
        for m in range(8):
            t.file(f"{d}/mod{m:02d}.py", _source(rng))
            n += 1
        if n >= 2000:
            break


def _fifty_k(t: _TarOut) -> None:
    rng = random.Random(5)
    t.dir("srv")
    for d in range(5000):
        t.dir(f"srv/d{d:04d}")
        for f in range(10):
            t.file(f"srv/d{d:04d}/f{f}.js", _source(rng)[: rng.randint(60, 2000)])


def _layer(cache: str, name: str, build: Callable[[_TarOut], None]) -> str:
    out = os.path.join(cache, name + ".tar")
    if not os.path.exists(out):
        def write(f: io.BufferedWriter) -> None:
            t = _TarOut(f)
            build(t)
            t.close()
        _atomic(out, write)
    return out


def _save(cache: str, key: str, ref: str, layers: list[LayerTar]) -> BenchImage:
    from berth.images.archive import SaveImage, write_save

    path = os.path.join(cache, f"image-{key}.tar")
    if not os.path.exists(path):
        diff_ids = [x.diff_id for x in layers]
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                          "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:"
                                                                 "/usr/sbin:/usr/bin:/sbin:/bin"]},
                          "rootfs": {"type": "layers", "diff_ids": diff_ids},
                          "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "bench"}
                                      for _ in layers]}).encode()
        by_id = {x.diff_id: x.path for x in layers}
        familiar = ref.removeprefix("docker.io/")

        def layer(cid: str, out: io.BufferedWriter) -> None:
            with open(by_id[cid], "rb") as f:
                while chunk := f.read(1 << 20):
                    out.write(chunk)

        img = SaveImage("sha256:" + hashlib.sha256(cfg).hexdigest(), cfg, diff_ids, diff_ids,
                        [x.size for x in layers], [(ref, familiar)])
        _atomic(path, lambda f: write_save(f, [img], layer))  # type: ignore[arg-type]
    return BenchImage(key, ref, path, layers)


def build_all(cache: str = CACHE) -> dict[str, BenchImage]:
    os.makedirs(cache, exist_ok=True)
    debian = _describe(debian_layer(cache))
    five = [debian] + [_describe(_layer(cache, n, b)) for n, b in
                       (("site-packages", _site_packages), ("binaries", _binaries), ("deletions", _deletions),
                        ("rewrites", _rewrites))]
    fifty = _describe(_layer(cache, "fifty-k", _fifty_k))
    return {"debian": _save(cache, "debian", "docker.io/bench/debian:bookworm", [debian]),
            "five": _save(cache, "five", "docker.io/bench/five:1", five),
            "fiftyk": _save(cache, "fiftyk", "docker.io/bench/fiftyk:1", [fifty])}


if __name__ == "__main__":
    for img in build_all().values():
        print(img.key, img.ref, [(os.path.basename(x.path), x.entries, x.size) for x in img.layers])
