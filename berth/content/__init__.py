"""berthd's content store (see :mod:`berth.content.store`)."""

from berth.content.store import (
    CONFIG_REF,
    GZIP_REF,
    LEASE_REF,
    BlobNotFound,
    ContentStore,
    DigestMismatch,
    Info,
    Writer,
)

__all__ = ["CONFIG_REF", "GZIP_REF", "LEASE_REF", "BlobNotFound", "ContentStore", "DigestMismatch", "Info",
           "Writer"]
