"""Review fixes for the builder's handling of hostile input: Dockerfiles whose expansions or
flags a client controls, and the cost they may put on the daemon."""

from __future__ import annotations

import time

import docker
import pytest

from berth.build import shellwords
from tests.conftest import Daemon
from tests.test_build import api_build, cli_build, ctx_tar, errors, stream_text, write_ctx


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


BUILDKIT = "requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with"


@pytest.mark.parametrize("line,flag", [
    ("RUN --mount=type=cache,target=/var/cache echo hi > /made", "mount"),
    ("RUN --network=none echo hi > /made", "network"),
    ("ADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 f /made", "checksum"),
    ("COPY --parents f /made", "parents"),
])
def test_buildkit_only_flags_fail_their_step(daemon: Daemon, tmp_path: object, line: str, flag: str) -> None:
    # Docker's classic builder (20.10 here, checked side by side) stops at the step with this
    # message; berth ran the command as if the flag were not there (a cache or secret mount, a
    # checksum never verified) and tagged the result.
    ctx = write_ctx(f"{tmp_path}/ctx", {"Dockerfile": f"FROM busybox\n{line}\n", "f": "x"})
    code, out = cli_build(daemon, ctx, "-t", "bkflag:1", check=False)
    assert code != 0
    assert "Step 2/2 : " + line in out
    assert f"the --{flag} option {BUILDKIT} BuildKit enabled" in out
    assert "Successfully" not in out
    assert daemon.cli("images", "-q", "bkflag:1").stdout.strip() == b""


def test_run_output_keeps_a_character_split_across_writes(client: docker.DockerClient) -> None:
    # Each chunk of RUN output was decoded alone: an é written in two halves became two U+FFFD.
    df = "FROM busybox\nRUN printf 'caf\\303'; sleep 0.5; printf '\\251 ok\\n'\n"
    msgs = api_build(client, ctx_tar({"Dockerfile": df}), nocache=True)
    assert not errors(msgs), msgs
    assert "café ok\n" in stream_text(msgs)


def test_costly_pattern_substitution_is_refused_quickly() -> None:
    # ${A/*a*a*a*b/x} against a few KiB of "a" backtracks for hours inside the daemon's event
    # loop; now a substitution error (an in-stream build error) before any matching is tried.
    start = time.monotonic()
    with pytest.raises(shellwords.SubstitutionError, match="too costly"):
        shellwords.expand("${A/*a*a*a*b/x}", {"A": "a" * 4096}, "\\")
    with pytest.raises(shellwords.SubstitutionError, match="too costly"):
        shellwords.expand("${A%%*a*a*b}", {"A": "a" * 4096}, "\\")
    assert time.monotonic() - start < 2
    # what Dockerfiles write every day is unaffected
    assert shellwords.expand("${V%.*}-${V#*.}-${V/./_}", {"V": "1.2.3"}, "\\") == "1.2-2.3-1_2.3"


def test_image_config_size_is_bounded(client: docker.DockerClient) -> None:
    # ENV A=$A$A doubled to 4 MiB, then ENV Bn=$A: each step stored the whole growing config
    # again (gigabytes for a few more lines); the build now stops at the step that passes 16 MiB.
    lines = ["FROM busybox", "ENV A=0123456789abcdef", *["ENV A=$A$A"] * 18, *[f"ENV B{i}=$A" for i in range(8)]]
    msgs = api_build(client, ctx_tar({"Dockerfile": "\n".join(lines) + "\n"}), tag="bigcfg:1")
    errs = errors(msgs)
    assert errs and "more than berth's limit" in errs[-1]["error"], msgs[-3:]
    text = stream_text(msgs)
    assert "Step 21/28 : ENV B0=$A" in text and "Step 22/28" not in text
    assert not client.images.list(name="bigcfg")
