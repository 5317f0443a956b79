"""Digests (``algorithm:encoded``) as the distribution spec uses them: parsing and hashing.

Only the registered algorithms a registry must understand are accepted: sha256 and sha512.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from berth.registry.model.errors import digest_invalid

# algorithm -> hex length of the encoded part (the names are also hashlib names)
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")


@dataclass(frozen=True, order=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def parse_digest(value: str) -> Digest:
    """Parse and validate a digest; a malformed or unsupported one is DIGEST_INVALID."""
    if not _GRAMMAR.match(value or ""):
        raise digest_invalid(value, "invalid digest format")
    algo, enc = value.split(":", 1)
    want = ALGORITHMS.get(algo)
    if want is None:
        raise digest_invalid(value, f"unsupported digest algorithm {algo}")
    if len(enc) != want or not re.fullmatch(r"[a-f0-9]+", enc):
        raise digest_invalid(value, f"invalid {algo} encoding")
    return Digest(algo, enc)


def is_digest(value: str) -> bool:
    try:
        parse_digest(value)
    except Exception:
        return False
    return True


def new_hasher(algorithm: str) -> Any:
    return hashlib.new(algorithm)


def compute(algorithm: str, data: bytes) -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())


def sha256(data: bytes) -> Digest:
    return compute("sha256", data)
