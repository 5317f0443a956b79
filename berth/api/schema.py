"""Typed decoding of JSON request bodies, as Docker's Go decoder does it.

dockerd decodes a body into Go structs: a field of the wrong JSON type, a fraction or an
out-of-range number for an integer field, is refused before anything happens, with a message
naming the field ("json: cannot unmarshal number into Go struct field CreateRequest.Labels of
type string"). ``decode`` does the same from a table of field types (berth/api/bodies.py) and
returns the body as the Go side would see it: unknown fields dropped, field names matched
case-insensitively and spelled as declared, ``null`` as an unset field.

Berth adds one refusal Go does not make: a NUL character in a string (it cannot become a
file name, an argument or an environment entry). Lone UTF-16 surrogates become U+FFFD,
as Go's decoder turns invalid UTF-8 into it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from berth.errors import InvalidParameter

_SURROGATE = re.compile("[\ud800-\udfff]")


class DecodeError(InvalidParameter):
    pass


class Type:
    go = "interface {}"

    def zero(self) -> Any:
        return None

    def decode(self, v: Any, ctx: _Ctx) -> Any:
        return v


@dataclass
class _Ctx:
    struct: str  # the innermost struct being decoded, as Go names it in errors
    path: tuple[str, ...]

    def fail(self, v: Any, t: Type, literal: bool = False) -> DecodeError:
        what = _json_kind(v)
        if literal and isinstance(v, int | float) and not isinstance(v, bool):
            what += " " + _go_number(v)
        where = ".".join(self.path)
        if where:
            return DecodeError(f"invalid JSON: json: cannot unmarshal {what} into Go struct field "
                               f"{self.struct}.{where} of type {t.go}")
        return DecodeError(f"invalid JSON: json: cannot unmarshal {what} into Go value of type {t.go}")


def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def _go_number(v: int | float) -> str:
    return str(v) if isinstance(v, int) else repr(v)


class Str(Type):
    go = "string"

    def zero(self) -> Any:
        return ""

    def decode(self, v: Any, ctx: _Ctx) -> Any:
        if not isinstance(v, str):
            raise ctx.fail(v, self)
        return clean_str(v, ctx)


def clean_str(v: str, ctx: _Ctx) -> str:
    if "\x00" in v:
        where = ".".join(ctx.path) or "body"
        raise DecodeError(f"invalid JSON: {where}: a string may not contain a NUL character")
    return _SURROGATE.sub("\ufffd", v)


class Bool(Type):
    go = "bool"

    def zero(self) -> Any:
        return False

    def decode(self, v: Any, ctx: _Ctx) -> Any:
        if not isinstance(v, bool):
            raise ctx.fail(v, self)
        return v


class Int(Type):
    def __init__(self, go: str, bits: int = 64, signed: bool = True) -> None:
        self.go = go
        self.lo = -(1 << (bits - 1)) if signed else 0
        self.hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1

    def zero(self) -> Any:
        return 0

    def decode(self, v: Any, ctx: _Ctx) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ctx.fail(v, self)
        if isinstance(v, float) or not self.lo <= v <= self.hi:
            raise ctx.fail(v, self, literal=True)
        return v


INT64 = Int("int64")
INT = Int("int")
UINT16 = Int("uint16", 16, signed=False)
UINT32 = Int("uint32", 32, signed=False)
UINT64 = Int("uint64", 64, signed=False)
UINT = Int("uint", 64, signed=False)
FILEMODE = Int("fs.FileMode", 32, signed=False)
DURATION = Int("time.Duration")
STR = Str()
BOOL = Bool()
ANY = Type()


class List(Type):
    def __init__(self, elem: Type, fixed: int | None = None) -> None:
        self.elem = elem
        self.fixed = fixed
        self.go = (f"[{fixed}]" if fixed else "[]") + elem.go

    def zero(self) -> Any:
        return []

    def decode(self, v: Any, ctx: _Ctx) -> Any:
        if not isinstance(v, list):
            raise ctx.fail(v, self)
        if self.fixed is not None:
            # Go drops the elements a fixed-size array has no room for, and zeroes those not given
            v = v[:self.fixed] + [None] * (self.fixed - len(v))
        return [self.elem.zero() if x is None else self.elem.decode(x, ctx) for x in v]


class StrSlice(Type):
    """Docker's strslice.StrSlice: a JSON string or an array of strings."""

    go = "strslice.StrSlice"

    def decode(self, v: Any, ctx: _Ctx) -> Any:
        if isinstance(v, str):
            return [clean_str(v, ctx)]
        if not isinstance(v, list):
            raise ctx.fail(v, STR)
        return ["" if x is None else STR.decode(x, ctx) for x in v]


class Map(Type):
    def __init__(self, elem: Type) -> None:
        self.elem = elem
        self.go = "map[string]" + elem.go

    def zero(self) -> Any:
        return {}

    def decode(self, v: Any, ctx: _Ctx) -> Any:
        if not isinstance(v, dict):
            raise ctx.fail(v, self)
        return {clean_str(k, ctx): self.elem.zero() if x is None else self.elem.decode(x, ctx) for k, x in v.items()}


class Empty(Type):
    """Go's ``struct{}``: any object, its content ignored (ExposedPorts, Volumes)."""

    go = "struct {}"

    def zero(self) -> Any:
        return {}

    def decode(self, v: Any, ctx: _Ctx) -> Any:
        if not isinstance(v, dict):
            raise ctx.fail(v, self)
        return {}


@dataclass
class Struct(Type):
    name: str  # the Go type's own name: what errors call "Go struct field <name>.<path>"
    fields: dict[str, Type]
    package: str = ""
    _by_lower: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.go = f"{self.package}.{self.name}" if self.package else self.name
        self._by_lower = {k.lower(): k for k in self.fields}

    def zero(self) -> Any:
        return {}

    def decode(self, v: Any, ctx: _Ctx) -> Any:
        if not isinstance(v, dict):
            raise ctx.fail(v, self)
        out: dict[str, Any] = {}
        for k, x in v.items():
            name = k if k in self.fields else self._by_lower.get(k.lower())
            if name is None or x is None:
                continue  # Go ignores unknown fields; null leaves a field unset
            out[name] = self.fields[name].decode(x, _Ctx(self.name, (*ctx.path, name)))
        return out


def embed(*parts: dict[str, Type], **more: Type) -> dict[str, Type]:
    """Fields of an embedded Go struct are promoted into the embedding one."""
    out: dict[str, Type] = {}
    for p in parts:
        out.update(p)
    out.update(more)
    return out


def decode(body: Any, t: Type) -> Any:
    """``body`` (parsed JSON) checked against ``t``; a wrong type is a 400 naming the field."""
    ctx = _Ctx(t.go, ())
    if body is None:
        return None
    if isinstance(t, Struct) and not isinstance(body, dict):
        raise ctx.fail(body, t)
    return t.decode(body, ctx)
