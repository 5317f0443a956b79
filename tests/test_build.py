"""POST /build through the real docker CLI (classic builder: DOCKER_BUILDKIT=0, no buildx) and the
Docker SDK, against a real berthd: output stream, images, history, cache, errors."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator

import docker
import pytest

from tests.conftest import Daemon


def ctx_tar(files: dict[str, str | bytes], modes: dict[str, int] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in sorted(files.items()):
            raw = data.encode() if isinstance(data, str) else data
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(raw), (modes or {}).get(name, 0o644), 1_700_000_000
            tf.addfile(ti, io.BytesIO(raw))
    return buf.getvalue()


def write_ctx(path: str, files: dict[str, str]) -> str:
    os.makedirs(path, exist_ok=True)
    for name, data in files.items():
        full = os.path.join(path, name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(data)
    return path


def cli_build(d: Daemon, ctx: str, *args: str, check: bool = True) -> tuple[int, str]:
    env_backup = os.environ.get("DOCKER_BUILDKIT")
    os.environ["DOCKER_BUILDKIT"] = "0"
    try:
        r = d.cli("build", *args, ctx, check=check, timeout=120)
    finally:
        if env_backup is None:
            os.environ.pop("DOCKER_BUILDKIT", None)
        else:
            os.environ["DOCKER_BUILDKIT"] = env_backup
    return r.returncode, r.stdout.decode() + r.stderr.decode()


def api_build(client: docker.DockerClient, tar: bytes, **kw: object) -> list[dict]:
    return list(client.api.build(fileobj=io.BytesIO(tar), custom_context=True, decode=True, **kw))


def stream_text(msgs: list[dict]) -> str:
    return "".join(m.get("stream", "") for m in msgs)


def errors(msgs: list[dict]) -> list[dict]:
    return [m for m in msgs if "error" in m]


BASIC = """FROM busybox
ARG GREETING=hello
ENV A=b
RUN echo $GREETING world $A && echo err >&2 && mkdir /out && echo x > /out/f
WORKDIR /app/sub
LABEL x=y
CMD ["sh"]
"""


def test_cli_build_runs_steps_and_tags(daemon: Daemon, tmp_path: object) -> None:
    ctx = write_ctx(str(tmp_path) + "/ctx", {"Dockerfile": BASIC})
    _, out = cli_build(daemon, ctx, "-t", "built:one")
    lines = out.splitlines()
    assert "Step 1/7 : FROM busybox" in lines
    assert "Step 4/7 : RUN echo $GREETING world $A && echo err >&2 && mkdir /out && echo x > /out/f" in lines
    assert "hello world b" in lines and "err" in lines
    assert any(x.startswith(" ---> Running in ") for x in lines)
    assert any(x.startswith("Removing intermediate container ") for x in lines)
    assert any(x.startswith("Successfully built ") for x in lines)
    assert "Successfully tagged built:one" in lines
    r = daemon.cli("run", "--rm", "built:one", "sh", "-c", "cat /out/f; pwd; echo $A")
    assert r.stdout.decode().split() == ["x", "/app/sub", "b"]
    info = daemon.client().api.inspect_image("built:one")
    assert info["Config"]["Labels"] == {"x": "y"}
    assert info["Config"]["Cmd"] == ["sh"]
    assert info["Config"]["WorkingDir"] == "/app/sub"
    hist = daemon.client().api.history("built:one")
    created_by = [h["CreatedBy"] for h in hist]
    assert created_by[0] == '/bin/sh -c #(nop)  CMD ["sh"]'
    assert "/bin/sh -c #(nop)  ENV A=b" in created_by
    assert "|1 GREETING=hello /bin/sh -c echo $GREETING world $A && echo err >&2 && mkdir /out && " \
           "echo x > /out/f" in created_by
    # no intermediate container is left behind
    assert daemon.client().api.containers(all=True) == []
    # the second build is all cache
    _, out2 = cli_build(daemon, ctx, "-t", "built:one")
    assert out2.count(" ---> Using cache") == 6
    assert out2.splitlines()[-2].split()[-1] == out.splitlines()[-2].split()[-1]

