"""Make a busybox base image from the host's busybox-static, with no registry involved.

Writes a ``docker save`` tarball (both layouts), loadable with ``docker load -i``.
The output is reproducible: every timestamp is ``SOURCE_DATE_EPOCH`` (default: the
busybox binary's own mtime, as the package shipped it), so the same busybox binary
always gives the same image ID.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from datetime import UTC, datetime

from berth.images.archive import SaveImage, write_save

DIRS = {"bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "proc": 0o755, "root": 0o700, "sbin": 0o755,
        "sys": 0o755, "tmp": 0o1777, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755, "var": 0o755,
        "var/spool": 0o755, "var/www": 0o755}
PASSWD = ("root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
          "nobody:x:65534:65534:nobody:/home:/bin/false\n")
GROUP = "root:x:0:\ndaemon:x:1:\ntty:x:5:\nnogroup:x:65534:\n"


def build_layer(busybox: str, epoch: int) -> bytes:
    applets = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime, ti.uname, ti.gname = kind, mode, epoch, "root", "root"
            ti.linkname = link
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data else None)

        for d, mode in sorted(DIRS.items()):
            add(d + "/", tarfile.DIRTYPE, mode)
        with open(busybox, "rb") as f:
            add("bin/busybox", tarfile.REGTYPE, 0o755, f.read())
        for path in sorted(set(applets)):
            path = path.lstrip("/")
            if path == "bin/busybox" or os.path.dirname(path) not in DIRS:
                continue
            add(path, tarfile.SYMTYPE, 0o777, link="/bin/busybox")
        add("etc/passwd", tarfile.REGTYPE, 0o644, PASSWD.encode())
        add("etc/group", tarfile.REGTYPE, 0o644, GROUP.encode())
    return buf.getvalue()


def build(busybox: str = "/bin/busybox", tag: str = "busybox:latest", epoch: int | None = None) -> bytes:
    if epoch is None:
        epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or os.stat(busybox).st_mtime)
    layer = build_layer(busybox, epoch)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    created = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = {
        "architecture": "amd64",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "created": created,
        "history": [{"created": created, "created_by": f"berth mkbusybox from {busybox}"},
                    {"created": created, "created_by": 'CMD ["sh"]', "empty_layer": True}],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    raw = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
    image_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    from berth.images.reference import parse

    ref = parse(tag)
    out = io.BytesIO()
    write_save(out, [SaveImage(image_id, raw, [diff_id], [diff_id], [len(layer)], [(str(ref), ref.familiar)])],
               lambda _cid, w: w.write(layer))
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", default="-", help="output tarball (default: stdout)")
    p.add_argument("-t", "--tag", default="busybox:latest")
    p.add_argument("--busybox", default="/bin/busybox")
    a = p.parse_args(argv)
    data = build(a.busybox, a.tag)
    if a.output == "-":
        sys.stdout.buffer.write(data)
    else:
        with open(a.output, "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
