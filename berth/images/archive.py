"""``docker save`` / ``docker load`` tarballs: the legacy ``manifest.json`` layout and
the OCI image layout that Docker 25+ writes (both in one tar on save).

Reading never extracts the outer tar to disk: entries are looked up by name and
streamed, so a hostile outer archive cannot write anywhere. Every config and layer is
checked against its digest before anything is committed.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import lzma
import os
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

from berth import gz
from berth.errors import InvalidParameter
from berth.layers.tarapply import UnsafeTarError

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_BUF = 1 << 20


class ArchiveError(InvalidParameter):
    """The tarball is not a valid image archive (HTTP 400)."""


@dataclass
class LoadItem:
    """One image found in an archive: its config and where its layers are."""

    raw_config: bytes
    layer_members: list[str]
    repo_tags: list[str] = field(default_factory=list)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArchiveReader:
    def __init__(self, path: str) -> None:
        try:
            self.tf = tarfile.open(path, "r:*")
            self.members = {self._norm(m.name): m for m in self.tf.getmembers()}
        except (tarfile.TarError, EOFError, OSError, zlib_error()) as e:
            raise ArchiveError(f"invalid image archive: {e}") from e

    @staticmethod
    def _norm(name: str) -> str:
        return name.lstrip("./").lstrip("/") if name.startswith(("./", "/")) else name

    def close(self) -> None:
        self.tf.close()

    def open(self, name: str) -> IO[bytes]:
        f = self.tf.extractfile(self._member(name))
        assert f is not None
        return f

    def plain_range(self, name: str) -> tuple[str, int, int] | None:
        """(archive path, offset, size) of member ``name`` when its bytes lie in the archive file
        as they are (an uncompressed archive, an uncompressed, non-sparse member): a layer can then
        be hashed and extracted in place instead of copied out first. ``None`` otherwise."""
        m = self._member(name)
        raw = self.tf.fileobj
        if not isinstance(raw, io.BufferedReader) or m.sparse is not None or not self.tf.name:
            return None
        raw.seek(m.offset_data)
        head = raw.read(6)
        if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")):
            return None
        return os.fsdecode(self.tf.name), m.offset_data, m.size  # opened by a str path: the same str

    def _member(self, name: str) -> tarfile.TarInfo:
        m = self.members.get(self._norm(name))
        if m is None:
            raise ArchiveError(f"invalid image archive: {name} not found")
        hops = 0
        while m.issym() or m.islnk():  # docker save may link duplicate layers
            hops += 1
            if hops > 40:  # a -> b -> a: a loop, not a layout
                raise ArchiveError(f"invalid image archive: {name}: too many levels of links")
            target = m.linkname if m.islnk() else os.path.normpath(
                os.path.join(os.path.dirname(m.name), m.linkname))
            m = self.members.get(self._norm(target))
            if m is None:
                raise ArchiveError(f"invalid image archive: {name} links to a missing entry")
        if not m.isreg():
            raise ArchiveError(f"invalid image archive: {name} is not a file")
        return m

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        data = self.open(name).read(limit + 1)
        if len(data) > limit:
            raise ArchiveError(f"invalid image archive: {name} is too large")
        return data

    def items(self) -> list[LoadItem]:
        if "manifest.json" in self.members:
            items = self._legacy_items()
        elif "index.json" in self.members:
            items = self._oci_items()
        else:
            raise ArchiveError("invalid image archive: no manifest.json or index.json found")
        for item in items:
            check_config(item.raw_config)
            if not all(isinstance(t, str) for t in item.repo_tags):
                raise ArchiveError("invalid image archive: a RepoTags entry is not a string")
        return items

    def _legacy_items(self) -> list[LoadItem]:
        try:
            manifest = json.loads(self.read("manifest.json"))
            items = []
            for entry in manifest:
                raw = self.read(entry["Config"])
                want = os.path.basename(entry["Config"]).removesuffix(".json")
                if len(want) == 64 and sha256_hex(raw) != want:
                    raise ArchiveError(
                        f"invalid image archive: config {entry['Config']} does not match its digest "
                        f"(got sha256:{sha256_hex(raw)})")
                items.append(LoadItem(raw, _strs(entry["Layers"], "Layers"), list(entry.get("RepoTags") or [])))
            return items
        except (KeyError, TypeError, AttributeError, ValueError) as e:  # ValueError: bad JSON or UTF-8
            raise ArchiveError(f"invalid image archive: malformed manifest.json: {e}") from e

    def _blob(self, desc: dict[str, Any]) -> bytes:
        digest = desc["digest"]
        algo, _, hexd = digest.partition(":")
        if algo != "sha256" or not _HEX64.fullmatch(hexd):
            raise ArchiveError(f"invalid image archive: unsupported digest {digest}")
        data = self.read(f"blobs/sha256/{hexd}")
        if sha256_hex(data) != hexd:
            raise ArchiveError(f"invalid image archive: blob {digest} does not match its digest")
        return data

    def _oci_items(self) -> list[LoadItem]:
        try:
            index = json.loads(self.read("index.json"))
            items: list[LoadItem] = []
            for desc in index.get("manifests") or []:
                name = (desc.get("annotations") or {}).get("io.containerd.image.name")
                self._collect(desc, [name] if name else [], items)
            return items
        except (KeyError, TypeError, AttributeError, ValueError) as e:  # ValueError: bad JSON or UTF-8
            raise ArchiveError(f"invalid image archive: malformed index.json: {e}") from e

    def _collect(self, desc: dict[str, Any], tags: list[str], items: list[LoadItem], depth: int = 0) -> None:
        if depth > 4:  # an index naming itself (or a chain of them) is not an image
            raise ArchiveError("invalid image archive: image indexes nested too deeply")
        data = json.loads(self._blob(desc))
        mt = desc.get("mediaType") or data.get("mediaType")
        if mt in (MT_OCI_INDEX, MT_DOCKER_LIST) or "manifests" in data:
            children = data.get("manifests", [])
            picked = [c for c in children
                      if (c.get("platform") or {}).get("architecture") in (None, "amd64")
                      and (c.get("platform") or {}).get("os") in (None, "linux")]
            for child in picked[:1] or children[:1]:
                self._collect(child, tags, items, depth + 1)
            return
        raw = self._blob(data["config"])
        layers = []
        for layer in data["layers"] or []:
            algo, _, hexd = layer["digest"].partition(":")
            layers.append(f"blobs/{algo}/{hexd}")
        items.append(LoadItem(raw, layers, tags))


_HEX64 = re.compile(r"[0-9a-f]{64}")
_DIFF_ID = re.compile(r"sha256:[0-9a-f]{64}")


def _strs(v: object, what: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ArchiveError(f"invalid image archive: {what} must be a list of strings")
    return v


def check_config(raw: bytes) -> None:
    """An image config as the layer and image stores need it: a JSON object whose rootfs lists
    sha256 diff IDs, and whose config (if any) is an object."""
    try:
        cfg = json.loads(raw)
    except ValueError as e:
        raise ArchiveError(f"invalid image config: {e}") from e
    if not isinstance(cfg, dict) or not isinstance(cfg.get("rootfs"), dict):
        raise ArchiveError("invalid image config: no rootfs")
    diff_ids = cfg["rootfs"].get("diff_ids") or []
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) and _DIFF_ID.fullmatch(d) for d in diff_ids):
        raise ArchiveError("invalid image config: rootfs.diff_ids must be sha256 digests")
    inner = cfg.get("config") or {}
    if not isinstance(inner, dict):
        raise ArchiveError("invalid image config: config must be an object")
    for key in ("Env", "Cmd", "Entrypoint", "OnBuild", "Shell"):
        if inner.get(key) is not None:
            _strs(inner[key], f"image config: config.{key}")
    for key in ("User", "WorkingDir", "StopSignal"):
        if not isinstance(inner.get(key) or "", str):
            raise ArchiveError(f"invalid image config: config.{key} must be a string")
    for key in ("Labels", "Volumes", "ExposedPorts"):
        if not isinstance(inner.get(key) or {}, dict):
            raise ArchiveError(f"invalid image config: config.{key} must be an object")
    if not all(isinstance(v, str) for v in (inner.get("Labels") or {}).values()):
        raise ArchiveError("invalid image config: config.Labels values must be strings")
    for key in ("architecture", "os", "created", "author"):
        if not isinstance(cfg.get(key) or "", str):
            raise ArchiveError(f"invalid image config: {key} must be a string")


def zlib_error() -> type[Exception]:
    import zlib

    return zlib.error


def _zstd_error() -> type[Exception]:
    import zstandard

    return zstandard.ZstdError


def _decompress_errors() -> tuple[type[Exception], ...]:
    """What a corrupt layer raises while read; called in the ``except`` clause, so zstandard is
    imported only once something went wrong."""
    return (OSError, EOFError, lzma.LZMAError, *gz.ERRORS, _zstd_error())


def decompressing(f: IO[bytes]) -> IO[bytes]:
    """Wrap ``f`` in the decompressor its magic bytes call for (gzip, bzip2, xz, zstd, or none)."""
    buffered = io.BufferedReader(f, _BUF)  # type: ignore[type-var]  # any binary file with readinto() serves
    head = buffered.peek(6)[:6]
    if head.startswith(b"\x1f\x8b"):
        return gz.open_reader(buffered)
    if head.startswith(b"BZh"):
        return bz2.BZ2File(buffered)
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(buffered)
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)
    return buffered


def hash_range(path: str, offset: int, size: int) -> str:
    """``sha256:<hex>`` of ``size`` bytes of ``path`` from ``offset`` (a layer in place)."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        f.seek(offset)
        while size:
            chunk = f.read(min(_BUF, size))
            if not chunk:
                raise ArchiveError("invalid layer data: archive is truncated")
            h.update(chunk)
            size -= len(chunk)
    return "sha256:" + h.hexdigest()


def spool_uncompressed(src: IO[bytes], dst_path: str) -> str:
    """Decompress ``src`` into ``dst_path`` while hashing; return ``sha256:<hex>`` of the tar."""
    h = hashlib.sha256()
    try:
        with decompressing(src) as d, open(dst_path, "wb") as out:
            while True:
                chunk = d.read(_BUF)
                if not chunk:
                    break
                h.update(chunk)
                out.write(chunk)
    except _decompress_errors() as e:
        raise ArchiveError(f"invalid layer data: {e}") from e
    return "sha256:" + h.hexdigest()


# -- save ------------------------------------------------------------------------------

@dataclass
class SaveImage:
    image_id: str
    raw_config: bytes
    diff_ids: list[str]
    layer_chain_ids: list[str]
    layer_tar_sizes: list[int]
    refs: list[tuple[str, str]]  # (full reference, familiar reference)


def _header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.type = kind
    ti.mode = 0o644 if kind == tarfile.REGTYPE else 0o755
    ti.mtime = 0
    return ti.tobuf(format=tarfile.PAX_FORMAT)


def _pad(out: BinaryIO, size: int) -> None:
    if size % 512:
        out.write(b"\0" * (512 - size % 512))


def write_save(out: BinaryIO, images: list[SaveImage], write_layer: Callable[[str, BinaryIO], None]) -> None:
    """Write a tarball with both layouts; ``write_layer(chain_id, out)`` emits a layer's tar."""

    def add_bytes(name: str, data: bytes) -> None:
        out.write(_header(name, len(data)))
        out.write(data)
        _pad(out, len(data))

    out.write(_header("blobs/", 0, tarfile.DIRTYPE))
    out.write(_header("blobs/sha256/", 0, tarfile.DIRTYPE))
    written: set[str] = set()
    legacy = []
    index = []
    for img in images:
        hexd = img.image_id.split(":", 1)[1]
        if hexd not in written:
            add_bytes(f"blobs/sha256/{hexd}", img.raw_config)
            written.add(hexd)
        layers = []
        for diff_id, cid, size in zip(img.diff_ids, img.layer_chain_ids, img.layer_tar_sizes, strict=True):
            lhex = diff_id.split(":", 1)[1]
            layers.append({"mediaType": MT_OCI_LAYER, "digest": diff_id, "size": size})
            if lhex in written:
                continue
            written.add(lhex)
            out.write(_header(f"blobs/sha256/{lhex}", size))
            counter = _Counting(out)
            write_layer(cid, counter)  # type: ignore[arg-type]
            if counter.n != size:
                raise OSError(f"layer {diff_id} produced {counter.n} bytes, expected {size}")
            _pad(out, size)
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "digest": img.image_id, "size": len(img.raw_config)},
            "layers": layers,
        }, separators=(",", ":")).encode()
        mhex = sha256_hex(manifest)
        if mhex not in written:
            add_bytes(f"blobs/sha256/{mhex}", manifest)
            written.add(mhex)
        mdesc = {"mediaType": MT_OCI_MANIFEST, "digest": "sha256:" + mhex, "size": len(manifest)}
        if img.refs:
            for full, _fam in img.refs:
                tag = full.rsplit(":", 1)[1]
                index.append(dict(mdesc, annotations={"io.containerd.image.name": full,
                                                      "org.opencontainers.image.ref.name": tag}))
        else:
            index.append(mdesc)
        legacy.append({
            "Config": f"blobs/sha256/{hexd}",
            "RepoTags": [fam for _full, fam in img.refs] or None,
            "Layers": [f"blobs/sha256/{d.split(':', 1)[1]}" for d in img.diff_ids],
        })
    add_bytes("index.json", json.dumps({"schemaVersion": 2, "mediaType": MT_OCI_INDEX,
                                        "manifests": index}, separators=(",", ":")).encode())
    add_bytes("manifest.json", json.dumps(legacy, separators=(",", ":")).encode())
    add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    out.write(b"\0" * 1024)


class _Counting:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.n = 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return self.out.write(data)


__all__ = ["ArchiveError", "ArchiveReader", "LoadItem", "SaveImage", "UnsafeTarError", "spool_uncompressed",
           "write_save"]
