"""The OCI Distribution error model: one exception type carrying the spec's code, status and headers.

The model and the endpoints raise :class:`RegistryError` (or a helper below); the HTTP layer's middleware
(:mod:`berth.registry.endpoints.errors`) renders it as ``{"errors": [...]}``. Nothing here knows HTTP
frameworks, so the storage model can raise it too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# The spec's code table: code -> (default HTTP status, default message).
CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown to registry"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
    # Not in the spec table, but distribution uses it for server faults and clients understand it.
    "UNKNOWN": (500, "unknown error"),
}


class ErrorInfo:
    """One entry of the ``errors`` array."""

    __slots__ = ("code", "message", "detail")

    def __init__(self, code: str, message: str | None = None, detail: Any = None) -> None:
        self.code = code
        self.message = message or CODES[code][1]
        self.detail = detail

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            out["detail"] = self.detail
        return out


class RegistryError(Exception):
    """A spec error response; may carry several entries (e.g. one per unknown blob)."""

    def __init__(self, code: str, message: str | None = None, detail: Any = None, *, status: int | None = None,
                 headers: Mapping[str, str] | None = None, more: list[ErrorInfo] | None = None) -> None:
        first = ErrorInfo(code, message, detail)
        super().__init__(f"{code}: {first.message}")
        self.errors = [first, *(more or [])]
        self.status = status if status is not None else CODES[code][0]
        self.headers = dict(headers or {})

    @property
    def code(self) -> str:
        return self.errors[0].code

    def body(self) -> bytes:
        return json.dumps({"errors": [e.to_json() for e in self.errors]}).encode()


def blob_unknown(digest: str) -> RegistryError:
    return RegistryError("BLOB_UNKNOWN", detail={"digest": digest})


def manifest_unknown(reference: str) -> RegistryError:
    return RegistryError("MANIFEST_UNKNOWN", detail={"reference": reference})


def name_unknown(name: str) -> RegistryError:
    return RegistryError("NAME_UNKNOWN", detail={"name": name})


def upload_unknown(session_id: str) -> RegistryError:
    return RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"session": session_id})


def digest_invalid(digest: str, message: str | None = None) -> RegistryError:
    return RegistryError("DIGEST_INVALID", message, detail={"digest": digest})


def unsupported(message: str | None = None, *, status: int = 405, allow: list[str] | None = None) -> RegistryError:
    headers = {"Allow": ", ".join(allow)} if allow else None
    return RegistryError("UNSUPPORTED", message, status=status, headers=headers)
