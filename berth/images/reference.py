"""Image references: ``[registry/]repository[:tag|@digest]``, normalised as Docker does.

``busybox`` → ``docker.io/library/busybox:latest``; the familiar form drops
``docker.io/`` and ``library/`` again for display (``RepoTags``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from berth.errors import InvalidParameter

DEFAULT_DOMAIN = "docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"

# \Z, not $: Python's $ also matches before a final newline; ASCII classes, as Go's regexps
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+\Z")
_DOMAIN = re.compile(r"^(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?\Z")
_ID = re.compile(r"^(sha256:)?[0-9a-f]{64}\Z")


class InvalidReference(InvalidParameter):
    pass


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str  # e.g. "library/busybox"
    tag: str | None = None
    digest: str | None = None

    @property
    def repo(self) -> str:
        """Fully qualified repository: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        s = self.repo
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    @property
    def familiar_repo(self) -> str:
        return familiar(self.repo)

    @property
    def familiar(self) -> str:
        return familiar(str(self))


def familiar(name: str) -> str:
    """``docker.io/library/busybox:latest`` → ``busybox:latest``."""
    if name.startswith(DEFAULT_DOMAIN + "/"):
        name = name[len(DEFAULT_DOMAIN) + 1 :]
        if name.startswith(OFFICIAL_PREFIX) and "/" not in name[len(OFFICIAL_PREFIX) :].split(":")[0]:
            name = name[len(OFFICIAL_PREFIX) :]
    return name


def looks_like_id(s: str) -> bool:
    return bool(_ID.match(s))


def parse(ref: str, default_tag: bool = True) -> Reference:
    """Parse and normalise; ``default_tag`` adds ``latest`` when neither tag nor digest is given."""
    if not ref or ref != ref.strip():
        raise InvalidReference("invalid reference format")
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not _DIGEST.match(digest):
            raise InvalidReference("invalid reference format")
    tag = None
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        ref, tag = ref[:colon], ref[colon + 1 :]
        if not _TAG.match(tag):
            raise InvalidReference("invalid reference format")
    parts = ref.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"
                           or parts[0] != parts[0].lower()):
        domain, rest = parts[0], parts[1:]
        if not _DOMAIN.match(domain):
            raise InvalidReference("invalid reference format")
    else:
        domain, rest = DEFAULT_DOMAIN, parts
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    path = "/".join(rest)
    if path != path.lower():
        raise InvalidReference(f"invalid reference format: repository name ({path}) must be lowercase")
    if not rest or not all(_COMPONENT.match(c) for c in rest) or len(path) > 255:
        raise InvalidReference("invalid reference format")
    if domain == DEFAULT_DOMAIN and len(rest) == 1:
        path = OFFICIAL_PREFIX + path
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def parse_repo_tag(repo: str, tag: str | None) -> Reference:
    """The ``repo`` + ``tag`` query pair of ``/images/{name}/tag`` and ``/commit``."""
    ref = parse(repo, default_tag=False)
    if ref.digest:
        raise InvalidReference("refusing to create a tag with a digest reference")
    if tag:
        if ref.tag:
            raise InvalidReference("invalid reference format")
        if not _TAG.match(tag):
            raise InvalidReference(f"invalid tag format: {tag}")
        return Reference(ref.domain, ref.path, tag)
    return Reference(ref.domain, ref.path, ref.tag or DEFAULT_TAG)
