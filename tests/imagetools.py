"""Build image tarballs for tests: layers from (path, content) lists, in docker-save layouts."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

from berth.images.archive import SaveImage, write_save
from berth.images.reference import parse

Entry = tuple  # (name, type, data-or-linkname[, mode])


def layer_tar(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            name, kind = e[0], e[1]
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            elif kind == "file":
                data = e[2] if isinstance(e[2], bytes) else e[2].encode()
                ti.size, ti.mode = len(data), (e[3] if len(e) > 3 else 0o644)
                tf.addfile(ti, io.BytesIO(data))
            elif kind == "symlink":
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, e[2], 0o777
                tf.addfile(ti)
            elif kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, e[2]
                tf.addfile(ti)
            else:
                raise ValueError(kind)
    return buf.getvalue()


def config_for(layers: list[bytes], cmd: list[str] | None = None, labels: dict[str, str] | None = None) -> bytes:
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in layers]
    cfg = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
           "config": {"Cmd": cmd or ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
                      **({"Labels": labels} if labels else {})},
           "rootfs": {"type": "layers", "diff_ids": diff_ids},
           "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"} for i in range(len(layers))]}
    return json.dumps(cfg, sort_keys=True).encode()


def save_tar(images: list[tuple[list[bytes], str | None, bytes | None]], layout: str = "both",
             diff_id_override: dict[int, str] | None = None) -> bytes:
    """``images``: (layer tars, tag, config or None). layout: both | legacy | oci."""
    items = []
    blobs: dict[str, bytes] = {}
    for layers, tag, raw in images:
        raw = raw or config_for(layers)
        diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in layers]
        for d, t in zip(diff_ids, layers, strict=True):
            blobs[d] = t
        refs = []
        if tag:
            r = parse(tag)
            refs = [(str(r), r.familiar)]
        items.append(SaveImage("sha256:" + hashlib.sha256(raw).hexdigest(), raw, diff_ids, diff_ids,
                               [len(t) for t in layers], refs))
    out = io.BytesIO()
    write_save(out, items, lambda cid, w: w.write(blobs[cid]))
    data = out.getvalue()
    if layout == "both":
        return data
    drop = {"legacy": {"index.json", "oci-layout"}, "oci": {"manifest.json"}}[layout]
    src = tarfile.open(fileobj=io.BytesIO(data))
    dst_buf = io.BytesIO()
    with tarfile.open(fileobj=dst_buf, mode="w") as dst:
        for m in src.getmembers():
            if m.name in drop:
                continue
            dst.addfile(m, src.extractfile(m) if m.isreg() else None)
    return dst_buf.getvalue()


def image_id(raw_config: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw_config).hexdigest()


def load_failure(api: object, data: bytes) -> str:
    """Load ``data`` through the SDK's low-level API and return the error the daemon reported.
    As dockerd, a failed load answers 200 and reports the error inside the JSON stream."""
    messages = list(api.load_image(data))  # type: ignore[attr-defined]
    errors = [m["errorDetail"]["message"] for m in messages if isinstance(m, dict) and "errorDetail" in m]
    assert errors, f"the load did not fail: {messages}"
    return str(errors[-1])
