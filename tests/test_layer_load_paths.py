"""docker load's two ways in: a plain layer in a plain archive is hashed and extracted where it lies;
a compressed layer, or any layer of a compressed archive, is decompressed into scratch space first.
Both must give back every layer byte for byte on save, and a bad layer must change nothing."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import docker
import pytest

from berth.images.archive import SaveImage, write_save
from berth.images.reference import parse
from tests.conftest import Daemon, store_snapshot
from tests.imagetools import config_for, image_id, layer_tar


def _archive(layers: list[bytes], blobs: list[bytes], tag: str) -> bytes:
    """A manifest.json-layout archive whose layer members hold ``blobs`` (plain or compressed)."""
    raw = config_for(layers)
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in layers]
    by_id = dict(zip(diff_ids, blobs, strict=True))
    r = parse(tag)
    out = io.BytesIO()
    write_save(out, [SaveImage(image_id(raw), raw, diff_ids, diff_ids, [len(b) for b in blobs],
                               [(str(r), r.familiar)])], lambda cid, w: w.write(by_id[cid]))
    src = tarfile.open(fileobj=io.BytesIO(out.getvalue()))
    legacy = io.BytesIO()  # the OCI index would name the compressed blob by the tar's digest: drop it
    with tarfile.open(fileobj=legacy, mode="w") as dst:
        for m in src.getmembers():
            if m.name not in ("index.json", "oci-layout"):
                dst.addfile(m, src.extractfile(m) if m.isreg() else None)
    return legacy.getvalue()


def _saved_layers(client: docker.DockerClient, tag: str) -> list[bytes]:
    data = b"".join(client.images.get(tag).save())
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        return [tf.extractfile(x).read() for x in manifest[0]["Layers"]]  # type: ignore[union-attr]


def _layers() -> list[bytes]:
    base = layer_tar([("etc", "dir"), ("etc/os-release", "file", "ID=bench\n"), ("bin", "dir"),
                      ("bin/tool", "file", b"\x7fELF" + bytes(range(256)) * 64, 0o755),
                      ("bin/alias", "symlink", "tool"), ("bin/same", "hardlink", "bin/tool")])
    top = layer_tar([("etc", "dir"), ("etc/os-release", "file", "ID=changed\n"), ("etc/.wh.missing", "file", ""),
                     ("srv", "dir")] + [(f"srv/f{i}", "file", f"content {i}\n" * (i % 7)) for i in range(300)])
    return [base, top]


@pytest.mark.parametrize("how", ["plain", "gzip-layer", "gzip-archive"])
def test_load_then_save_is_byte_for_byte(client: docker.DockerClient, how: str) -> None:
    layers = _layers()
    tag = f"loadpaths/{how}:1"
    blobs = [layers[0], gzip.compress(layers[1], mtime=0)] if how == "gzip-layer" else layers
    data = _archive(layers, blobs, tag)
    if how == "gzip-archive":
        data = gzip.compress(data, mtime=0)
    client.images.load(data)
    try:
        assert _saved_layers(client, tag) == layers
    finally:
        client.images.remove(tag, force=True)


def test_corrupt_layer_in_place_changes_nothing(client: docker.DockerClient, daemon: Daemon) -> None:
    """A plain layer whose bytes do not match its diff ID: refused before extraction, nothing stored."""
    layers = _layers()
    data = bytearray(_archive(layers, layers, "loadpaths/corrupt:1"))
    at = data.find(b"ID=bench\n")
    assert at > 0
    data[at:at + 2] = b"XX"
    before = store_snapshot(daemon)
    with pytest.raises(docker.errors.ImageLoadError) as e:
        client.images.load(bytes(data))
    assert "invalid diffID" in str(e.value)
    assert store_snapshot(daemon) == before
