"""POST /build through the real docker CLI (classic builder: DOCKER_BUILDKIT=0, no buildx) and the
Docker SDK, against a real berthd: output stream, images, history, cache, errors."""

from __future__ import annotations

import io
import os
import tarfile

import docker
import pytest

from tests.conftest import Daemon
from tests.test_distribution import reference_registry  # noqa: F401 - a fixture


def ctx_tar(files: dict[str, str | bytes], modes: dict[str, int] | None = None, mtime: int = 1_700_000_000) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in sorted(files.items()):
            raw = data.encode() if isinstance(data, str) else data
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(raw), (modes or {}).get(name, 0o644), mtime
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



def test_sdk_build_path_and_fileobj(client: docker.DockerClient, tmp_path: object) -> None:
    ctx = write_ctx(str(tmp_path) + "/sdk", {"Dockerfile": "FROM busybox\nRUN echo sdk > /s\nCMD [\"cat\", \"/s\"]\n"})
    image, logs = client.images.build(path=ctx, tag="sdk:path")
    assert "sdk:path" in image.tags
    assert any("Step 2/3 : RUN echo sdk > /s" in x.get("stream", "") for x in logs)
    assert client.containers.run("sdk:path", remove=True) == b"sdk\n"
    df = io.BytesIO(b"FROM busybox\nENV K=v\nLABEL a=b\n")
    image2, _ = client.images.build(fileobj=df, tag="sdk:fileobj")
    assert "K=v" in image2.attrs["Config"]["Env"] and image2.labels == {"a": "b"}


def test_run_output_streams_live(client: docker.DockerClient) -> None:
    import time

    tar = ctx_tar({"Dockerfile": "FROM busybox\nRUN echo first && sleep 1.5 && echo second\n"})
    seen: dict[str, float] = {}
    for msg in client.api.build(fileobj=io.BytesIO(tar), custom_context=True, decode=True, nocache=True):
        for word in ("first", "second"):
            if msg.get("stream", "").strip() == word:
                seen[word] = time.monotonic()
    assert seen["second"] - seen["first"] > 1.0  # the first line came while the step still ran


def test_quiet_and_build_args_and_labels(client: docker.DockerClient) -> None:
    tar = ctx_tar({"Dockerfile": "FROM busybox\nARG V=default\nRUN echo $V > /v\n"})
    msgs = api_build(client, tar, quiet=True, buildargs={"V": "given", "UNUSED": "x"}, labels={"l": "1"})
    streams = [m["stream"] for m in msgs if "stream" in m]
    iid = next(m["aux"]["ID"] for m in msgs if "aux" in m)
    assert streams == [iid + "\n"]
    assert client.containers.run(iid, ["cat", "/v"], remove=True) == b"given\n"
    assert client.images.get(iid).labels == {"l": "1"}
    loud = api_build(client, tar, buildargs={"V": "given", "UNUSED": "x"})
    assert "[Warning] One or more build-args [UNUSED] were not consumed\n" in stream_text(loud)


def test_multi_stage_target_and_copy_from_stage(client: docker.DockerClient) -> None:
    df = """FROM busybox AS base
RUN echo base > /b
FROM busybox AS unused
RUN exit 9
FROM base AS final
RUN cat /b > /c
FROM final
RUN echo last > /l
"""
    msgs = api_build(client, ctx_tar({"Dockerfile": df}), target="final", tag="ms:final")
    assert not errors(msgs), msgs
    text = stream_text(msgs)
    assert "exit 9" not in text and "echo last" not in text  # stages the target does not need: skipped
    assert "Step 1/4 : FROM busybox AS base" in text
    assert client.containers.run("ms:final", ["cat", "/c"], remove=True) == b"base\n"


def test_onbuild_triggers_run_in_child(client: docker.DockerClient) -> None:
    parent = ctx_tar({"Dockerfile": "FROM busybox\nONBUILD RUN echo triggered > /t\n"})
    assert not errors(api_build(client, parent, tag="onb:parent"))
    msgs = api_build(client, ctx_tar({"Dockerfile": "FROM onb:parent\nCMD [\"cat\", \"/t\"]\n"}), tag="onb:child")
    assert "# Executing 1 build trigger\n" in stream_text(msgs)
    assert client.containers.run("onb:child", remove=True) == b"triggered\n"
    assert not client.images.get("onb:child").attrs["Config"].get("OnBuild")


def test_config_instructions(client: docker.DockerClient) -> None:
    df = """FROM busybox
MAINTAINER someone
SHELL ["/bin/sh", "-ec"]
USER 1000:1000
EXPOSE 80 53/udp
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD true
ENTRYPOINT ["echo"]
"""
    msgs = api_build(client, ctx_tar({"Dockerfile": df}), tag="cfg:all")
    assert not errors(msgs), msgs
    attrs = client.images.get("cfg:all").attrs
    c = attrs["Config"]
    assert attrs["Author"] == "someone"
    assert c["Shell"] == ["/bin/sh", "-ec"] and c["User"] == "1000:1000"
    assert set(c["ExposedPorts"]) == {"80/tcp", "53/udp"} and c["Volumes"] == {"/data": {}}
    assert c["StopSignal"] == "SIGINT" and c["Entrypoint"] == ["echo"] and not c["Cmd"]
    assert c["Healthcheck"]["Test"] == ["CMD-SHELL", "true"] and c["Healthcheck"]["Interval"] == 5_000_000_000
    # no layer for config-only instructions
    assert attrs["RootFS"]["Layers"] == client.images.get("busybox").attrs["RootFS"]["Layers"]


# -- bad input ---------------------------------------------------------------------------------------
def _no_change(client: docker.DockerClient) -> tuple[list[str], list[str]]:
    return (sorted(t for i in client.images.list() for t in i.tags),
            sorted(c["Id"] for c in client.api.containers(all=True)))


def test_failing_run_reports_exit_code_and_tags_nothing(client: docker.DockerClient) -> None:
    before = _no_change(client)
    tar = ctx_tar({"Dockerfile": "FROM busybox\nRUN echo ok\nRUN exit 3\n"})
    msgs = api_build(client, tar, tag="bad:run", forcerm=True)
    err = errors(msgs)
    assert err == [{"errorDetail": {"code": 3, "message": "The command '/bin/sh -c exit 3' returned a non-zero "
                                                           "code: 3"},
                    "error": "The command '/bin/sh -c exit 3' returned a non-zero code: 3"}]
    assert _no_change(client) == before


def test_cli_failing_run(daemon: Daemon, tmp_path: object) -> None:
    ctx = write_ctx(str(tmp_path) + "/fail", {"Dockerfile": "FROM busybox\nRUN false\n"})
    code, out = cli_build(daemon, ctx, "--force-rm", "-t", "bad:cli", check=False)
    assert code == 1
    assert "The command '/bin/sh -c false' returned a non-zero code: 1" in out


@pytest.mark.parametrize("dockerfile,status,needle", [
    ("FROM busybox\nFOO bar\n", 400, "dockerfile parse error on line 2: unknown instruction: FOO"),
    ("FROM busybox\nRUN true\nFROM\n", 400, "line 3"),
    ("RUN true\n", 400, "no build stage in current context"),
])
def test_bad_dockerfile_is_400(client: docker.DockerClient, dockerfile: str, status: int, needle: str) -> None:
    with pytest.raises(docker.errors.APIError) as e:
        api_build(client, ctx_tar({"Dockerfile": dockerfile}), tag="bad:df")
    assert e.value.status_code == status and needle in str(e.value.explanation)


def test_invalid_from_in_stream(client: docker.DockerClient) -> None:
    before = _no_change(client)
    msgs = api_build(client, ctx_tar({"Dockerfile": "FROM localhost:1/nothing/here\nRUN true\n"}), tag="bad:from")
    assert errors(msgs) and "Step 1/2 : FROM localhost:1/nothing/here" in stream_text(msgs)
    msgs = api_build(client, ctx_tar({"Dockerfile": "FROM Bad:Name:x\n"}), tag="bad:from")
    assert "invalid reference format" in errors(msgs)[0]["error"]
    assert _no_change(client) == before


def test_not_a_tar_and_refused_parameters(client: docker.DockerClient) -> None:
    api = client.api
    r = api._post(api._url("/build"), data=b"this is not a tar archive at all" * 40)
    assert r.status_code == 400
    r = api._post(api._url("/build"), params={"squash": "1"}, data=ctx_tar({"Dockerfile": "FROM busybox\n"}))
    assert r.status_code == 400 and "squash" in r.json()["message"]
    r = api._post(api._url("/build"), params={"cachefrom": "", "buildargs": "", "labels": "null", "t": "lenient:1"},
                  data=ctx_tar({"Dockerfile": "FROM busybox\n"}))
    assert r.status_code == 200 and "Successfully tagged lenient:1" in r.text


def test_run_honours_network_and_user(client: docker.DockerClient) -> None:
    df = """FROM busybox
RUN grep -c : /proc/net/dev > /ifaces
USER 1000
WORKDIR /tmp
RUN id -u > /tmp/uid && pwd > /tmp/pwd
"""
    msgs = api_build(client, ctx_tar({"Dockerfile": df}), tag="netb:1", network_mode="none")
    assert not errors(msgs), msgs
    out = client.containers.run("netb:1", ["cat", "/ifaces", "/tmp/uid", "/tmp/pwd"], remove=True,
                                network_mode="none").decode().split()
    assert out == ["1", "1000", "/tmp"]  # lo alone: no other interface


def test_intermediates_hidden_then_pruned(client: docker.DockerClient) -> None:
    before = {i["Id"] for i in client.api.images(all=True)}
    msgs = api_build(client, ctx_tar({"Dockerfile": "FROM busybox\nRUN echo p > /p\nENV P=1\nRUN echo q > /q\n"}),
                     tag="prune:me")
    final = next(m["aux"]["ID"] for m in msgs if "aux" in m)
    top = {i["Id"] for i in client.api.images()}
    every = {i["Id"] for i in client.api.images(all=True)}
    intermediates = every - top - before
    assert final in top and len(intermediates) == 2  # RUN, ENV; the last RUN is the final image
    df = client.api.df()
    assert isinstance(df["BuildCache"], list) and isinstance(df["Images"], list)
    client.api.remove_image("prune:me")
    client.api.prune_images()
    left = {i["Id"] for i in client.api.images(all=True)}
    assert not (intermediates | {final}) & left
    # a pruned step is a cache miss, not an error
    again = api_build(client, ctx_tar({"Dockerfile": "FROM busybox\nRUN echo p > /p\n"}))
    assert not errors(again) and " ---> Using cache" not in stream_text(again)


def test_cli_dockerfile_on_stdin(daemon: Daemon, tmp_path: object) -> None:
    r = daemon.cli("build", "-t", "stdin:df", "-", input=b"FROM busybox\nRUN echo stdin > /s\n", timeout=120)
    assert b"Successfully tagged stdin:df" in r.stdout
    ctx = write_ctx(str(tmp_path) + "/nodf", {"data.txt": "d"})
    code, out = cli_build(daemon, ctx, "-f", "Missing.Dockerfile", check=False)
    assert code != 0 and "Missing.Dockerfile" in out


def test_cli_dockerfile_dash_f_with_context(daemon: Daemon, tmp_path: object) -> None:
    # the CLI's tar ends right after the last entry's data (no padding, no end blocks), as dockerd accepts
    ctx = write_ctx(str(tmp_path) + "/dashf", {"data.txt": "d"})
    r = daemon.cli("build", "-t", "stdin:f", "-f", "-", ctx, input=b"FROM busybox\nLABEL from=stdin\n", timeout=120)
    assert b"Successfully tagged stdin:f" in r.stdout
    assert daemon.client().images.get("stdin:f").labels == {"from": "stdin"}


# -- COPY / ADD ----------------------------------------------------------------------------------------
def _tar_of(files: dict[str, str]) -> bytes:
    return ctx_tar(files)


def test_copy_add_chown_chmod_from_and_tar(client: docker.DockerClient) -> None:
    pytest.importorskip("berth.build.copysrc")
    inner = _tar_of({"x/in-tar.txt": "from the tar"})
    df = """FROM busybox AS src
RUN echo staged > /staged
FROM busybox
COPY --chown=nobody:nogroup --chmod=640 a.txt /dst/
COPY --from=src /staged /from-stage
COPY --from=busybox /bin/busybox /from-image
ADD bundle.tar /unpacked/
COPY *.md /docs/
WORKDIR /w
COPY rel.txt .
"""
    files: dict[str, str | bytes] = {"Dockerfile": df, "a.txt": "A", "bundle.tar": inner, "one.md": "1",
                                     "two.md": "2", "rel.txt": "r", "ignored.md": "no", ".dockerignore": "ignored.md\n"}
    msgs = api_build(client, ctx_tar(files), tag="copies:1")
    assert not errors(msgs), msgs
    script = ("stat -c '%U:%G %a' /dst/a.txt; cat /from-stage /unpacked/x/in-tar.txt; echo; ls /docs; "
              "cat /w/rel.txt; test -x /from-image && echo exe")
    out = client.containers.run("copies:1", ["sh", "-c", script], remove=True).decode().split("\n")
    assert out[0] == "nobody:nogroup 640"
    assert out[1:3] == ["staged", "from the tar"]
    assert out[3:5] == ["one.md", "two.md"] and out[5] == "rexe"
    history = [h["CreatedBy"] for h in client.api.history("copies:1")]
    assert history[0].startswith("/bin/sh -c #(nop) COPY file:") and history[0].endswith(" in . ")
    assert history[1] == "/bin/sh -c #(nop) WORKDIR /w"
    assert history[2].startswith("/bin/sh -c #(nop) COPY multi:") and history[2].endswith(" in /docs/ ")
    assert history[3].startswith("/bin/sh -c #(nop) ADD file:")


@pytest.mark.parametrize("line,files,needle", [
    ("COPY missing.txt /x", {}, "missing.txt"),
    ("COPY ../outside /x", {}, "outside"),
    ("COPY link/passwd /x", {}, "passwd"),
])
def test_copy_bad_sources(client: docker.DockerClient, line: str, files: dict[str, str], needle: str) -> None:
    pytest.importorskip("berth.build.copysrc")
    before = _no_change(client)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        df = f"FROM busybox\n{line}\n".encode()
        ti = tarfile.TarInfo("Dockerfile")
        ti.size = len(df)
        tf.addfile(ti, io.BytesIO(df))
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"  # resolves inside the context, never the host's /etc
        tf.addfile(link)
    msgs = api_build(client, buf.getvalue(), tag="bad:copy", forcerm=True)
    err = errors(msgs)
    assert err and needle in err[0]["error"], msgs
    assert _no_change(client) == before


def test_missing_base_is_pulled_and_pull_repulls(daemon: Daemon, request: pytest.FixtureRequest) -> None:
    registry = request.getfixturevalue("reference_registry")  # Debian's docker-registry on loopback
    client = daemon.client()
    ref = f"{registry}/base/bb:v1"
    daemon.cli("tag", "busybox", ref)
    daemon.cli("push", ref)
    daemon.cli("rmi", ref)
    msgs = api_build(client, ctx_tar({"Dockerfile": f"FROM {ref}\nRUN echo pulled > /p\n"}), tag="pulledbase:1")
    assert not errors(msgs), msgs
    assert any(m.get("status", "") == f"Pulling from {registry}/base/bb" for m in msgs)
    assert client.images.get(ref)  # the base stays, as docker pull would leave it
    again = api_build(client, ctx_tar({"Dockerfile": f"FROM {ref}\n"}), pull=True)
    assert any("Pulling from" in m.get("status", "") for m in again) and not errors(again)
    cached = api_build(client, ctx_tar({"Dockerfile": f"FROM {ref}\n"}))
    assert not any("Pulling from" in m.get("status", "") for m in cached)


def test_client_gone_mid_run_leaves_no_container(client: docker.DockerClient) -> None:
    import time

    before = {c["Id"] for c in client.api.containers(all=True)}
    tar = ctx_tar({"Dockerfile": "FROM busybox\nRUN echo started && sleep 30\n"})
    stream = client.api.build(fileobj=io.BytesIO(tar), custom_context=True, decode=True, nocache=True)
    for msg in stream:
        if msg.get("stream", "").strip() == "started":
            break
    stream.close()  # the client hangs up while the RUN still runs
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if {c["Id"] for c in client.api.containers(all=True)} == before:
            break
        time.sleep(0.2)
    assert {c["Id"] for c in client.api.containers(all=True)} == before



def test_heredocs_in_run_and_copy(client: docker.DockerClient) -> None:
    df = """FROM busybox
ENV WHO=heredoc
RUN <<EOF
echo script line one > /one
echo "$WHO" >> /one
EOF
RUN cat <<EOT > /two
inline $WHO
EOT
COPY <<EOF /three
copied $WHO
EOF
"""
    msgs = api_build(client, ctx_tar({"Dockerfile": df}), tag="heredoc:1")
    assert not errors(msgs), msgs
    out = client.containers.run("heredoc:1", ["cat", "/one", "/two", "/three"], remove=True).decode()
    assert out == "script line one\nheredoc\ninline heredoc\ncopied heredoc\n"


def test_run_shmsize_and_memory(client: docker.DockerClient) -> None:
    df = "FROM busybox\nRUN df -k /dev/shm | tail -1 > /shm && cat /sys/fs/cgroup/memory.max " \
         "/sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null | head -1 > /mem; true\n"
    msgs = api_build(client, ctx_tar({"Dockerfile": df}), tag="limits:1", shmsize=32 << 20,
                     container_limits={"memory": 96 << 20})
    assert not errors(msgs), msgs
    shm, mem = client.containers.run("limits:1", ["cat", "/shm", "/mem"], remove=True).decode().splitlines()
    assert shm.split()[1] == str(32 << 10)  # 1K-blocks
    assert mem.strip() == str(96 << 20)


def test_add_url_from_loopback(client: docker.DockerClient, tmp_path: object) -> None:
    import functools
    import http.server
    import threading

    served = str(tmp_path) + "/served"
    os.makedirs(served)
    with open(served + "/data.tar", "wb") as f:
        f.write(ctx_tar({"inside.txt": "not unpacked"}))
    os.utime(served + "/data.tar", (1_600_000_000, 1_600_000_000))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=served)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        df = f"FROM busybox\nADD {url}/data.tar /dl/\nADD {url}/data.tar /renamed.tar\n"
        msgs = api_build(client, ctx_tar({"Dockerfile": df}), tag="addurl:1", buildargs={"BERTH_REPRODUCIBLE": "0"})
        assert not errors(msgs), msgs
        out = client.containers.run("addurl:1", ["stat", "-c", "%a %Y %s", "/dl/data.tar", "/renamed.tar"],
                                    remove=True).decode().splitlines()
        size = os.path.getsize(served + "/data.tar")
        assert out == [f"600 1600000000 {size}"] * 2
        missing = api_build(client, ctx_tar({"Dockerfile": f"FROM busybox\nADD {url}/nothing /x\n"}))
        assert "404" in errors(missing)[0]["error"]
    finally:
        server.shutdown()
        server.server_close()
