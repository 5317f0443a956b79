"""The build cache changes one input at a time: what must bust it does, what must not does not,
and it survives a berthd restart."""

from __future__ import annotations

import docker
import pytest

from tests.conftest import Daemon
from tests.test_build import api_build, ctx_tar, errors, stream_text


def _steps(msgs: list[dict]) -> list[bool]:
    """Per step after FROM: True when it came from the cache."""
    out: list[bool] = []
    lines = stream_text(msgs).splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Step ") and " : FROM " not in line:
            out.append(i + 1 < len(lines) and lines[i + 1] == " ---> Using cache")
    return out


def _build(client: docker.DockerClient, files: dict[str, str], modes: dict[str, int] | None = None,
           **kw: object) -> tuple[list[bool], str]:
    msgs = api_build(client, ctx_tar(files, modes), **kw)
    assert not errors(msgs), msgs
    return _steps(msgs), next(m["aux"]["ID"] for m in msgs if "aux" in m)


ARGS_DF = "FROM busybox\nRUN echo a > /a\nARG V=1\nRUN echo $V > /v\nENV E=1\n"


def test_build_arg_busts_only_steps_after_it(client: docker.DockerClient) -> None:
    first, a = _build(client, {"Dockerfile": ARGS_DF})
    assert first == [False, False, False, False]
    again, b = _build(client, {"Dockerfile": ARGS_DF})
    assert again == [True, True, True, True] and a == b
    changed, c = _build(client, {"Dockerfile": ARGS_DF}, buildargs={"V": "2"})
    assert changed == [True, False, False, False] and c != a
    assert client.containers.run(c, ["cat", "/v"], remove=True) == b"2\n"
    nocache, _ = _build(client, {"Dockerfile": ARGS_DF}, nocache=True)
    assert nocache == [False, False, False, False]


def test_base_image_change_busts_everything(client: docker.DockerClient) -> None:
    base1 = ctx_tar({"Dockerfile": "FROM busybox\nRUN echo 1 > /base\n"})
    assert not errors(api_build(client, base1, tag="cachebase:latest"))
    child = {"Dockerfile": "FROM cachebase\nRUN cat /base > /copy\nLABEL k=v\n"}
    _build(client, child)
    cached, _ = _build(client, child)
    assert cached == [True, True]
    base2 = ctx_tar({"Dockerfile": "FROM busybox\nRUN echo 2 > /base\n"})
    assert not errors(api_build(client, base2, tag="cachebase:latest"))
    rebuilt, iid = _build(client, child)
    assert rebuilt == [False, False]
    assert client.containers.run(iid, ["cat", "/copy"], remove=True) == b"2\n"


def test_cache_from_limits_sources(client: docker.DockerClient) -> None:
    df = {"Dockerfile": "FROM busybox\nRUN echo cf > /cf\n"}
    _, iid = _build(client, df, tag="cf:src")
    hit, _ = _build(client, df, cache_from=["cf:src"])
    assert hit == [True]
    miss, _ = _build(client, df, cache_from=["busybox"])
    assert miss == [False]


def test_cache_survives_restart(fresh_daemon: Daemon) -> None:
    files = {"Dockerfile": "FROM busybox\nRUN echo persist > /p\n"}
    _, a = _build(fresh_daemon.client(), files)
    fresh_daemon.stop()
    fresh_daemon.start()
    steps, b = _build(fresh_daemon.client(), files)
    assert steps == [True] and a == b


COPY_DF = "FROM busybox\nCOPY . /app/\nRUN ls -l /app > /listing\n"


def test_copy_inputs_one_at_a_time(client: docker.DockerClient) -> None:
    pytest.importorskip("berth.build.copysrc")
    files = {"Dockerfile": COPY_DF, "a.txt": "one", "sub/b.txt": "two", "skip.log": "x",
             ".dockerignore": "*.log\n"}
    first, base_id = _build(client, files)
    assert first == [False, False]
    assert _build(client, files)[0] == [True, True]
    # an ignored file changed: no bust
    assert _build(client, {**files, "skip.log": "changed"})[0] == [True, True]
    # content
    assert _build(client, {**files, "a.txt": "ONE"})[0] == [False, False]
    # mode only
    assert _build(client, files, modes={"a.txt": 0o755})[0] == [False, False]
    # back to the first: the first images are reused
    steps, iid = _build(client, files)
    assert steps == [True, True] and iid == base_id
    out = client.containers.run(iid, ["cat", "/app/a.txt", "/app/sub/b.txt"], remove=True)
    assert out == b"onetwo"
    assert client.containers.run(iid, ["ls", "-A", "/app"], remove=True).split() == [b".dockerignore", b"Dockerfile",
                                                                               b"a.txt", b"sub"]


def test_cache_from_a_loaded_image(client: docker.DockerClient, fresh_daemon: Daemon) -> None:
    files = {"Dockerfile": "FROM busybox\nENV A=1\nRUN echo loaded > /l\nWORKDIR /srv\nCMD [\"cat\", \"/l\"]\n"}
    _, built = _build(client, files, tag="cfsrc:1")
    saved = b"".join(client.api.get_image("cfsrc:1"))
    other = fresh_daemon.client()
    other.api.load_image(saved)
    msgs = api_build(other, ctx_tar(files), cache_from=["cfsrc:1"])
    assert not errors(msgs), msgs
    text = stream_text(msgs)
    assert _steps(msgs) == [True, True, True, True] and " ---> Running in" not in text
    assert next(m["aux"]["ID"] for m in msgs if "aux" in m) == built
    out = other.containers.run(built, remove=True)
    assert out == b"loaded\n"
