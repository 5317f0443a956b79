"""Hypothesis strategies for the API fuzzer: values drawn from the Engine API's swagger
definitions, hostile values, and malformed image archives."""

from __future__ import annotations

import io
import json
import re
import tarfile
from typing import Any

from hypothesis import strategies as st

HOSTILE_STR = st.sampled_from(["", " ", "x\n", "0-40000000", "-1", "1.5", "1e400", "NaN", "true", "null", "{}",
                               "..", "../../etc", "/", "a" * 300, "\u00e9", "\U0001f600", "9" * 40, "%00", "%ff",
                               "a,b", "[]", "\\", "'", "\""])
HOSTILE_INT = st.sampled_from([-1, 0, 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30])


def _hostile_json(depth: int = 2) -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), HOSTILE_INT, st.integers(), st.floats(allow_nan=False,
                        allow_infinity=False), HOSTILE_STR, st.text(max_size=12))
    if depth <= 0:
        return scalars
    inner = _hostile_json(depth - 1)
    return st.one_of(scalars, st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3))


HOSTILE = _hostile_json()


class Schema:
    """Hypothesis strategies from the swagger 2.0 definitions, each node sometimes replaced by
    a value of the wrong type, a huge or fractional number, an odd string."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.defs = doc["definitions"]

    def resolve(self, s: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in s:
            s = self.defs[s["$ref"].rsplit("/", 1)[1]]
        if "allOf" in s:
            merged: dict[str, Any] = {"type": "object", "properties": {}}
            for part in s["allOf"]:
                merged["properties"].update(self.resolve(part).get("properties") or {})
            return merged
        return s

    def near(self, s: dict[str, Any], base: dict[str, Any]) -> st.SearchStrategy[Any]:
        """``base`` (a valid body) with up to two of its schema's fields, and up to two fields of
        each nested object it has (HostConfig), replaced by drawn values: each field gets tried
        in a body that would otherwise pass."""
        props = self.resolve(s).get("properties") or {}
        top = st.dictionaries(st.sampled_from(sorted(props)), st.just(None), max_size=2).flatmap(
            lambda keys: st.fixed_dictionaries({k: self.shaped(props[k]) for k in keys}))
        nested = {k: self.resolve(v).get("properties") for k, v in props.items() if k in base}
        nested = {k: v for k, v in nested.items() if v}

        def merge(parts: tuple[dict[str, Any], dict[str, dict[str, Any]]]) -> dict[str, Any]:
            out = json.loads(json.dumps(base))
            for k, v in parts[1].items():
                out[k] = {**out[k], **v}
            out.update(parts[0])
            return out

        inner = st.fixed_dictionaries({}, optional={
            k: st.dictionaries(st.sampled_from(sorted(v)), st.just(None), max_size=2).flatmap(
                lambda keys, v=v: st.fixed_dictionaries({kk: self.shaped(v[kk]) for kk in keys}))
            for k, v in nested.items()})
        return st.tuples(top, inner).map(merge)

    def shaped(self, s: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
        s = self.resolve(s)
        kind = s.get("type")
        if depth > 5:
            return HOSTILE
        if "enum" in s:
            base: st.SearchStrategy[Any] = st.sampled_from([x for x in s["enum"] if x is not None] or [""])
        elif kind == "boolean":
            base = st.booleans()
        elif kind == "integer":
            base = st.one_of(st.integers(min_value=s.get("minimum", -(2**40)), max_value=s.get("maximum", 2**40)),
                             HOSTILE_INT)
        elif kind == "number":
            base = st.one_of(st.floats(allow_nan=False, allow_infinity=False), HOSTILE_INT)
        elif kind == "string":
            base = st.one_of(st.text(max_size=20), HOSTILE_STR)
        elif kind == "array":
            base = st.lists(self.shaped(s.get("items") or {}, depth + 1), max_size=3)
        elif s.get("properties"):
            props = {k: self.shaped(v, depth + 1) for k, v in s["properties"].items()}
            base = st.fixed_dictionaries({}, optional=props)
        elif isinstance(s.get("additionalProperties"), dict):
            base = st.dictionaries(st.text(max_size=10), self.shaped(s["additionalProperties"], depth + 1),
                                   max_size=3)
        else:
            base = HOSTILE
        return st.one_of(base, base, base, HOSTILE)  # mostly shaped, a quarter hostile


def make_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


TAR_BODY = st.one_of(
    st.binary(max_size=600),
    st.dictionaries(st.sampled_from(["index.json", "manifest.json", "oci-layout", "blobs/sha256/" + "0" * 64,
                                     "../evil", "a/b/c", "etc/passwd", "repositories"]),
                    st.one_of(st.binary(max_size=64), HOSTILE.map(lambda v: json.dumps(v).encode())),
                    max_size=4).map(make_tar),
)


def archive_variants(good: bytes) -> st.SearchStrategy[bytes]:
    """A valid image archive, and that archive with one member's content replaced: a
    malformed index, manifest, config or layer inside an otherwise valid OCI layout."""
    with tarfile.open(fileobj=io.BytesIO(good)) as tf:
        members = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isreg()}  # type: ignore[union-attr]

    def rebuild(change: tuple[str, bytes]) -> bytes:
        return make_tar({**members, change[0]: change[1]})

    junk = st.one_of(st.binary(max_size=64), HOSTILE.map(lambda v: json.dumps(v).encode()),
                     st.sampled_from(sorted(members)).map(lambda n: _json_mutant(members[n])))
    return st.one_of(st.just(good), st.tuples(st.sampled_from(sorted(members)), junk).map(rebuild))


def _json_mutant(raw: bytes) -> bytes:
    """A JSON member with its first list emptied and its first string turned into a number."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return raw[: len(raw) // 2]
    text = json.dumps(doc)
    return re.sub(r'"[^"]*"(?=[,}\]])', "7", text, count=1).encode()
