"""Detach keys: the key sequence that ends an attach to a TTY and leaves the process running.

Docker's syntax: comma-separated keys, each a single character or ``ctrl-<value>`` (any case)
with ``<value>`` one of ``@``, ``a``-``z``, ``[``, ``\\``, ``]``, ``^``, ``_`` (control codes
0 to 31). The default is ``ctrl-p,ctrl-q``.
"""

from __future__ import annotations

DEFAULT = b"\x10\x11"  # ctrl-p, ctrl-q
_CTRL = "@abcdefghijklmnopqrstuvwxyz[\\]^_"  # ctrl-<c> is the control code at c's index


def parse(spec: str) -> bytes:
    """The bytes of ``spec``; ValueError (Docker's ``Unknown character: 'x'``) if one is not a key."""
    out = bytearray()
    for key in spec.split(","):
        if len(key.encode()) == 1:
            out += key.encode()
            continue
        low = key.lower()
        if len(low) == 6 and low.startswith("ctrl-") and low[5] in _CTRL:
            out.append(_CTRL.index(low[5]))
            continue
        raise ValueError(f"Unknown character: '{key}'")
    return bytes(out)


class Escape:
    """Watches a stdin stream for the detach sequence, across chunk boundaries. Bytes that may
    start the sequence are held back until the next bytes decide; if the sequence does not follow
    they are passed on, so nothing typed is lost."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys or DEFAULT
        self._held = 0  # how many bytes of the sequence were seen last

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """``(bytes to pass on, detached)``. After a detach the rest of ``data`` is dropped."""
        out = bytearray()
        for b in data:
            if b == self.keys[self._held]:
                self._held += 1
                if self._held == len(self.keys):
                    return bytes(out), True
                continue
            if self._held:  # a partial match that did not go on: pass it on, then look again at b
                out += self.keys[:self._held]
                self._held = 0
                if b == self.keys[0]:
                    self._held = 1
                    if self._held == len(self.keys):
                        return bytes(out), True
                    continue
            out.append(b)
        return bytes(out), False
