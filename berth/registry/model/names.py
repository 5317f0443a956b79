"""Repository names and tags, validated with the spec's grammars."""

from __future__ import annotations

import re

from berth.registry.model.errors import RegistryError

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
# Clients put "host[:port]/" in front of the name and cap the whole at 255; keep the name within that.
MAX_NAME = 255


def valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME and bool(NAME_RE.match(name))


def check_name(name: str) -> str:
    if not valid_name(name):
        raise RegistryError("NAME_INVALID", detail={"name": name})
    return name


def valid_tag(tag: str) -> bool:
    return bool(TAG_RE.match(tag))
