"""Hostile API input: every bad body, query value or archive is a 4xx naming what is wrong,
costs the daemon little, and changes nothing."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import time
from typing import Any

import docker
import pytest
import requests

from tests.conftest import Daemon


def post_json(client: docker.DockerClient, path: str, body: Any, params: dict[str, str] | None = None,
              raw: bytes | None = None) -> requests.Response:
    data = raw if raw is not None else json.dumps(body).encode()
    return client.api.post(client.api._url(path), data=data, params=params or {},
                           headers={"Content-Type": "application/json"}, timeout=60)


def assert_400(r: requests.Response, *words: str, status: int = 400) -> str:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "application/json"
    msg = r.json()["message"]
    for w in words:
        assert w in msg, msg
    return msg


def state(client: docker.DockerClient) -> tuple[list[str], list[str], list[str]]:
    return ([c["Id"] for c in client.api.containers(all=True)], [i["Id"] for i in client.api.images(all=True)],
            [v["Name"] for v in client.api.volumes()["Volumes"] or []])


def test_cpuset_out_of_range_is_refused_without_expanding(client: docker.DockerClient) -> None:
    before = state(client)
    for spec in ("0-40000000", "0-999999999999999999", "1000000"):
        t = time.monotonic()
        r = post_json(client, "/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                     "HostConfig": {"CpusetCpus": spec}})
        assert time.monotonic() - t < 1.0
        assert_400(r, f"Requested CPUs are not available - requested {spec}, available: ")
    r = post_json(client, "/containers/create", {"Image": "busybox", "HostConfig": {"CpusetMems": "0-40000000"}})
    assert_400(r, "Requested memory nodes are not available - requested 0-40000000")
    for bad in ("0-a", "3-1", "0,,1", "-1", " 0"):
        r = post_json(client, "/containers/create", {"Image": "busybox", "HostConfig": {"CpusetCpus": bad}})
        assert_400(r, f"Invalid value {bad} for cpuset cpus")
    assert state(client) == before


def test_cpuset_that_exists_is_accepted(daemon: Daemon) -> None:
    out = daemon.cli("run", "--rm", "--cpuset-cpus", "0", "--cpuset-mems", "0", "busybox", "true")
    assert out.returncode == 0


def test_oversized_json_body_is_413_and_the_loop_stays_responsive(daemon: Daemon,
                                                                 client: docker.DockerClient) -> None:
    before = state(client)
    body = b'{"Image": "busybox", "Env": [' + b",".join([b'"A=' + b"x" * 100 + b'"'] * 1_500_000) + b"]}"
    assert len(body) > 150 << 20
    worst = [0.0]
    done = threading.Event()

    def ping() -> None:
        c = daemon.client()
        while not done.is_set():
            t = time.monotonic()
            c.ping()
            worst[0] = max(worst[0], time.monotonic() - t)
            time.sleep(0.01)

    th = threading.Thread(target=ping)
    th.start()
    try:
        r = post_json(client, "/containers/create", None, raw=body)
    finally:
        done.set()
        th.join()
    assert_400(r, "request body too large", status=413)
    assert worst[0] < 0.1, worst[0]
    assert state(client) == before


def test_large_but_allowed_body_is_accepted_quickly(client: docker.DockerClient) -> None:
    env = [f"V{i}=x" for i in range(60_000)]  # ~0.6 MB; merging it once was quadratic
    t = time.monotonic()
    r = post_json(client, "/containers/create", {"Image": "busybox", "Cmd": ["true"], "Env": env})
    assert r.status_code == 201, r.text
    try:
        assert time.monotonic() - t < 5
        cfg = client.api.inspect_container(r.json()["Id"])["Config"]
        assert cfg["Env"][-1] == "V59999=x"
    finally:
        client.api.remove_container(r.json()["Id"])


def test_non_string_label_is_refused_and_ps_keeps_working(daemon: Daemon, client: docker.DockerClient) -> None:
    before = state(client)
    r = post_json(client, "/containers/create", {"Image": "busybox", "Labels": {"a": 1}})
    assert_400(r, "json: cannot unmarshal number into Go struct field CreateRequest.Labels of type string")
    assert state(client) == before
    assert daemon.cli("ps", "-a").returncode == 0


@pytest.mark.parametrize(("body", "words"), [
    ({"Cmd": 5}, ["Go struct field CreateRequest.Cmd", "number"]),
    ({"Env": "A=1"}, ["CreateRequest.Env of type []string"]),
    ({"Env": [1]}, ["CreateRequest.Env of type string"]),
    ({"Tty": "yes"}, ["CreateRequest.Tty of type bool"]),
    ({"ExposedPorts": {"80/tcp": 1}}, ["ExposedPorts of type struct {}"]),
    ({"StopTimeout": 1.5}, ["number 1.5", "CreateRequest.StopTimeout of type int"]),
    ({"Healthcheck": {"Interval": "1s"}}, ["HealthConfig.Healthcheck.Interval of type time.Duration"]),
    ({"HostConfig": {"Memory": 1.5}}, ["number 1.5", "HostConfig.HostConfig.Memory of type int64"]),
    ({"HostConfig": {"Memory": 2**64}}, [f"number {2**64}", "Memory of type int64"]),
    ({"HostConfig": {"CpuShares": "1024"}}, ["HostConfig.CpuShares of type int64"]),
    ({"HostConfig": {"BlkioWeight": -1}}, ["number -1", "BlkioWeight of type uint16"]),
    ({"HostConfig": {"Binds": "/tmp:/x"}}, ["HostConfig.Binds of type []string"]),
    ({"HostConfig": {"RestartPolicy": "always"}}, ["RestartPolicy of type container.RestartPolicy"]),
    ({"HostConfig": {"Mounts": [{"Type": "bind", "ReadOnly": "no"}]}}, ["Mount.HostConfig.Mounts.ReadOnly"]),
    ({"HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": "1"}]}}, ["Ulimits.Soft of type int64"]),
    ({"HostConfig": []}, ["CreateRequest.HostConfig of type container.HostConfig"]),
    ({"NetworkingConfig": {"EndpointsConfig": {"x": {"Aliases": "a"}}}}, ["EndpointsConfig.Aliases"]),
    ({"Hostname": "a\u0000b"}, ["Hostname: a string may not contain a NUL character"]),
    ({"HostConfig": {"MemorySwappiness": 101}}, ["valid memory swappiness range is 0-100"]),
    ({"HostConfig": {"OomScoreAdj": 5000}}, ["range for oom score adj is [-1000, 1000]"]),
    ({"HostConfig": {"MemoryReservation": 1}}, ["Minimum memory reservation allowed is 6MB"]),
])
def test_wrong_field_types_are_400_naming_the_field(client: docker.DockerClient, body: dict,
                                                    words: list[str]) -> None:
    before = state(client)
    r = post_json(client, "/containers/create", {"Image": "busybox", "Cmd": ["true"], **body})
    assert_400(r, *words)
    assert state(client) == before


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"x"', b"7", b"{\"Image\": NaN}", b"[" * 100_000,
                                 b'{"Image": 1' + b"0" * 5000 + b"}", b'{"Image": "\xff"}'])
def test_malformed_json_is_400(client: docker.DockerClient, raw: bytes) -> None:
    before = state(client)
    assert_400(post_json(client, "/containers/create", None, raw=raw), "invalid JSON")
    assert state(client) == before


def test_go_decoding_rules_apply(client: docker.DockerClient) -> None:
    """Field names match case-insensitively, null leaves a field unset, lone surrogates become
    U+FFFD, unknown fields are dropped, CpuShares are moved into range: as dockerd does."""
    r = post_json(client, "/containers/create", {
        "image": "busybox", "CMD": ["true"], "Labels": {"k": "\ud800x"}, "Entrypoint": None, "Bogus": {"x": 1},
        "HostConfig": {"cpushares": -5, "Memory": None}})
    assert r.status_code == 201, r.text
    try:
        info = client.api.inspect_container(r.json()["Id"])
        assert info["Config"]["Cmd"] == ["true"]
        assert info["Config"]["Labels"]["k"] == "\ufffdx"
        assert "Bogus" not in info["Config"]
        assert info["HostConfig"]["CpuShares"] == 2
    finally:
        client.api.remove_container(r.json()["Id"])


def test_names_with_a_trailing_newline_are_refused(client: docker.DockerClient) -> None:
    before = state(client)
    r = post_json(client, "/containers/create", {"Image": "busybox", "Cmd": ["true"]}, params={"name": "x1\n"})
    assert_400(r, "Invalid container name")
    ct = client.containers.create("busybox", ["true"], name="renameme")
    try:
        r = client.api.post(client.api._url("/containers/renameme/rename"), params={"name": "ok\n"})
        assert_400(r, "Invalid container name")
        assert client.api.inspect_container(ct.id)["Name"] == "/renameme"
    finally:
        ct.remove()
    r = post_json(client, "/volumes/create", {"Name": "vol\n"})
    assert_400(r, "includes invalid characters for a local volume name")
    r = client.api.post(client.api._url("/images/busybox/tag"), params={"repo": "ok", "tag": "v1\n"})
    assert_400(r, "invalid tag format")
    r = client.api.post(client.api._url("/images/busybox/tag"), params={"repo": "ok", "tag": "v\u00e91"})
    assert_400(r, "invalid tag format")
    assert state(client) == before


@pytest.mark.parametrize(("method", "path", "params", "field"), [
    ("GET", "/containers/json", {"all": "maybe"}, "all"),
    ("GET", "/containers/json", {"limit": "1_0"}, "limit"),
    ("GET", "/containers/json", {"limit": "\uff11"}, "limit"),
    ("GET", "/images/json", {"all": "2"}, "all"),
    ("POST", "/containers/{id}/stop", {"t": "abc"}, "t"),
    ("POST", "/containers/{id}/stop", {"t": "9" * 30}, "t"),
    ("GET", "/containers/{id}/logs", {"stdout": "1", "tail": "xyz"}, "tail"),
    ("GET", "/containers/{id}/logs", {"stdout": "1", "since": "garbage"}, "since"),
    ("GET", "/containers/{id}/logs", {"stdout": "1", "until": "nan"}, "until"),
    ("GET", "/events", {"since": "inf"}, "since"),
    ("DELETE", "/containers/{id}", {"force": "perhaps"}, "force"),
])
def test_bad_query_values_are_400_naming_the_field(client: docker.DockerClient, method: str, path: str,
                                                   params: dict[str, str], field: str) -> None:
    ct = client.containers.create("busybox", ["true"])
    try:
        r = client.api.request(method, client.api._url(path.replace("{id}", ct.id)), params=params, timeout=10)
        assert_400(r, f"invalid value for {field}")
        assert client.api.inspect_container(ct.id)["State"]["Status"] == "created"
    finally:
        ct.remove(force=True)


def test_other_json_bodies_are_typed(client: docker.DockerClient) -> None:
    before = state(client)
    r = post_json(client, "/volumes/create", {"Name": "v1", "Labels": {"a": 1}})
    assert_400(r, "Go struct field CreateOptions.Labels of type string")
    r = post_json(client, "/volumes/create", ["v1"])
    assert_400(r, "Go value of type volume.CreateOptions")
    ct = client.containers.run("busybox", ["sleep", "60"], detach=True)
    try:
        r = post_json(client, f"/containers/{ct.id}/exec", {"Cmd": ["echo", 1]})
        assert_400(r, "Go struct field ExecConfig.Cmd of type string")
        r = post_json(client, f"/containers/{ct.id}/exec", {"Cmd": ["true"], "Tty": 1})
        assert_400(r, "ExecConfig.Tty of type bool")
        eid = client.api.exec_create(ct.id, ["true"])["Id"]
        r = post_json(client, f"/exec/{eid}/start", {"Detach": "yes"})
        assert_400(r, "ExecStartCheck.Detach of type bool")
        r = client.api.post(client.api._url("/commit"), params={"container": ct.id, "repo": "c", "tag": "x\n"},
                            data=b"{}", headers={"Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        r = post_json(client, "/commit", {"Env": "A=1"}, params={"container": ct.id, "repo": "c"})
        assert_400(r, "Config.Env of type []string")
    finally:
        ct.remove(force=True)
    assert state(client) == before


# -- docker load of malformed archives ---------------------------------------------------------------------

def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _blob(data: bytes) -> tuple[str, str]:
    h = hashlib.sha256(data).hexdigest()
    return f"sha256:{h}", f"blobs/sha256/{h}"


def _oci(config: Any = None, manifest: Any = None, index: Any = None) -> bytes:
    files: dict[str, bytes] = {}
    cfg = json.dumps(config if config is not None else {"rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cdig, cpath = _blob(cfg)
    files[cpath] = cfg
    if manifest is None:
        manifest = {"schemaVersion": 2, "config": {"digest": cdig}, "layers": []}
    mraw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    mdig, mpath = _blob(mraw)
    files[mpath] = mraw
    if index is None:
        index = {"schemaVersion": 2, "manifests": [{"digest": mdig, "mediaType": "application/vnd.oci.image."
                                                                                "manifest.v1+json"}]}
    files["index.json"] = json.dumps(index).encode()
    return _tar(files)


@pytest.mark.parametrize("archive", [
    _oci(index=[1, 2]),
    _oci(index={"manifests": [5]}),
    _oci(index={"manifests": [{"digest": 5}]}),
    _oci(index={"manifests": [{"digest": "sha256:../../etc/passwd"}]}),
    _oci(manifest=b"\xff\xfe not json"),
    _oci(manifest=[1]),
    _oci(manifest={"config": {"digest": "sha256:" + "0" * 64}, "layers": "x"}),
    _oci(config=[1]),
    _oci(config={"rootfs": {"diff_ids": [5]}}),
    _oci(config={"rootfs": {"diff_ids": []}, "config": {"Env": "A=1"}}),
    _oci(config={"rootfs": {"diff_ids": []}, "config": {"Labels": {"a": 1}}}),
    _tar({"manifest.json": b'[{"Config": "c.json", "Layers": [], "RepoTags": [7]}]',
          "c.json": b'{"rootfs": {"diff_ids": []}}'}),
    _tar({"manifest.json": b'{"Config": "c.json"}'}),
], ids=lambda a: hashlib.sha256(a).hexdigest()[:8])
def test_malformed_image_archives_are_refused(client: docker.DockerClient, archive: bytes) -> None:
    before = state(client)
    r = client.api.post(client.api._url("/images/load"), data=archive, params={"quiet": "1"},
                        headers={"Content-Type": "application/x-tar"})
    # as dockerd: a 200 whose JSON stream ends with the error
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    last = json.loads(r.text.splitlines()[-1])
    assert "invalid image" in last["errorDetail"]["message"] and last["error"] == last["errorDetail"]["message"]
    assert state(client) == before
