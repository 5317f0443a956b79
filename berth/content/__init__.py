"""berthd's content store (see :mod:`berth.content.store`)."""

from berth.content.store import BlobNotFound, ContentStore, DigestMismatch, Info, Writer

__all__ = ["BlobNotFound", "ContentStore", "DigestMismatch", "Info", "Writer"]

CONFIG_REF = "image.config/"  # + image ID: the image store's config blobs
GZIP_REF = "layer.gzip/"  # + diff ID: a layer's gzip form, kept for pushes
LEASE_REF = "lease/"  # + a token: a blob in use for one operation (a pull's download)
