"""Apply a layer tar to a directory, safely, and reproduce the tar byte-for-byte later.

Safety: we never use ``tarfile.extract*``. Every entry's path is cleaned and checked
lexically (no ``..`` escape), then its parent directory is opened with ``openat2
(RESOLVE_IN_ROOT)`` (``berth.safepath``), so symlinks met on the way resolve *inside the root*
(as a chroot would), and the entry is made with ``*at()`` calls on that descriptor: no entry can
create, follow or link to anything outside ``root``, even while a container changes the tree.
Relative symlinks and hardlinks whose target climbs above the root are refused, as Docker does.

Whiteouts: ``.wh.NAME`` and ``.wh..wh..opq`` become overlayfs whiteouts (a 0:0 char device,
the ``trusted.overlay.opaque`` xattr) for the overlay driver, or deletions for vfs, whose
layer directory is a full copy of its parent.

Extraction records tar-split data as it goes (``berth.layers.tarsplit``), so the layer's
original bytes can be reassembled later.
"""

from __future__ import annotations

import errno
import os
import tarfile
from collections.abc import Callable
from typing import BinaryIO

from berth.layers.tarentry import WH_OPAQUE as WH_OPAQUE
from berth.layers.tarentry import WH_PREFIX as WH_PREFIX
from berth.layers.tarentry import UnsafeTarError as UnsafeTarError
from berth.layers.tarentry import WhiteoutMode as WhiteoutMode
from berth.layers.tarentry import clean_name as clean_name
from berth.layers.tarextract import ExtractData, Extractor
from berth.layers.tarsplit import Split
from berth.layers.tarwindow import open_range


def apply_tar(tar_path: str, root: str, mode: WhiteoutMode, split_out: BinaryIO | None = None,
              offset: int = 0, size: int | None = None, threads: int = 1) -> int:
    """Extract the uncompressed tar at ``tar_path`` into directory ``root``; return bytes of file data.
    ``offset``/``size``: the tar is that range of ``tar_path`` (a layer inside an image archive).
    ``threads`` > 1: regular files are created on that many threads; only for an empty ``root``
    that nothing else writes to (a new layer directory), see ``Extractor``.

    Raises ``UnsafeTarError`` for hostile or malformed archives; the caller discards ``root``.
    """
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return apply_tar_fd(tar_path, root_fd, mode, split_out, offset, size, threads)
    finally:
        os.close(root_fd)


def apply_tar_fd(tar_path: str, root_fd: int, mode: WhiteoutMode, split_out: BinaryIO | None = None,
                 offset: int = 0, size: int | None = None, threads: int = 1) -> int:
    """``apply_tar`` into the directory open as ``root_fd``; safe while others change the tree
    (with ``threads`` 1, the default)."""
    with open_range(tar_path, offset, size) as raw, open_range(tar_path, offset, size) as split_src:
        data = None
        if threads > 1:  # workers read file data with pread on a descriptor of their own
            data = ExtractData(os.open(tar_path, os.O_RDONLY | os.O_CLOEXEC), offset if size is not None else 0,
                         os.fstat(raw.fileno()).st_size if size is None else size)
        total = size if size is not None else os.fstat(raw.fileno()).st_size
        return _apply(raw, split_src, root_fd, mode, split_out, lambda: total, data, threads)


def apply_tar_stream(raw: BinaryIO, split_src: BinaryIO, root_fd: int, mode: WhiteoutMode,
                     split_out: BinaryIO | None, tar_size: Callable[[], int]) -> int:
    """``apply_tar`` from a tar still being written (``berth.layers.spool``): ``raw`` and
    ``split_src`` are two readers of it whose reads wait for the data; ``tar_size()`` gives the
    tar's final size (waiting for it), needed only once every entry was read. One thread."""
    return _apply(raw, split_src, root_fd, mode, split_out, tar_size, None, 1)


def _apply(raw: BinaryIO, split_src: BinaryIO, root_fd: int, mode: WhiteoutMode, split_out: BinaryIO | None,
           tar_size: Callable[[], int], data: ExtractData | None, threads: int) -> int:
    try:
        try:
            tf = tarfile.open(fileobj=raw, mode="r:")
        except tarfile.TarError as e:
            raise UnsafeTarError(f"invalid tar archive: {e}") from e
        ex = Extractor(tf, root_fd, mode, Split(split_src) if split_out is not None else None, data, threads)
        try:
            try:
                ex.run()
            finally:
                ex.close()
        except tarfile.TarError as e:
            raise UnsafeTarError(f"invalid tar archive: {e}") from e
        except EOFError as e:
            raise UnsafeTarError("invalid tar archive: unexpected end of data") from e
        except OSError as e:
            # ELOOP, EXDEV, EAGAIN: the tree changed under us or links go round (a hostile
            # container racing docker cp, or a hostile layer): refused, nothing outside touched
            if e.errno in (errno.ELOOP, errno.ENAMETOOLONG, errno.ENOTDIR, errno.EXDEV, errno.EAGAIN):
                raise UnsafeTarError(f"invalid tar archive: {e.strerror}: {e.filename}") from e
            raise
        if ex.split is not None and split_out is not None:
            ex.split.write(split_out, tar_size())
    finally:
        if data is not None:
            os.close(data.fd)
    return ex.total
