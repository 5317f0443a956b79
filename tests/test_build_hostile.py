"""Review fixes for the builder's handling of hostile input: Dockerfiles whose expansions or
flags a client controls, and the cost they may put on the daemon."""

from __future__ import annotations

import time

from berth.build import shellwords


def test_long_variable_expansion_is_linear() -> None:
    # ENV A=$A$A doubled to a megabyte took minutes of CPU (a str grown a character at a time),
    # blocking the daemon's event loop; Docker expands it at once.
    value = "0123456789abcdef" * (1 << 16)  # 1 MiB
    start = time.monotonic()
    out = shellwords.expand("$A$A", {"A": value}, "\\")
    assert out == value * 2
    words = shellwords.expand_words("x $A  y", {"A": "a b" + value}, "\\")
    assert words == ["x", "a", "b" + value, "y"]
    assert time.monotonic() - start < 5
