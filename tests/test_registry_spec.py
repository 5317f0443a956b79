"""The latest distribution-spec details and housekeeping, over HTTP on 127.0.0.1 against a real
`berth registry serve`: content negotiation by Accept, ?tag= with OCI-Tag, referrers of an unknown
repository, mount without `from`, upload cancel, idle-upload expiry, a persistent token key, request logs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.test_registry_proxy import Server
from tests.test_registry_server import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Client,
    backdate,
    basic,
    digest_of,
    get_token,
    parse_challenge,
    push_blob,
    push_image,
    push_manifest,
    write_htpasswd,
)


@pytest.fixture
def reg(tmp_path: Any) -> Iterator[Server]:
    s = Server(str(tmp_path / "reg"), "--upload-max-age", "2s")
    yield s
    s.close()


def test_manifest_content_negotiation(reg: Server) -> None:
    c = reg.client
    oci, oci_body, _ = push_image(c, "neg/app", "oci", [b"layer-o"])
    docker, _, _ = push_image(c, "neg/app", "docker", [b"layer-d"], media_type=DOCKER_MANIFEST)
    for method in ("GET", "HEAD"):
        r = c.request(method, "/v2/neg/app/manifests/oci", headers={"Accept": DOCKER_MANIFEST})
        assert r.status == 404
        if method == "GET":
            assert r.codes() == ["MANIFEST_UNKNOWN"]
        r = c.request(method, "/v2/neg/app/manifests/oci", headers={"Accept": f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"})
        assert r.status == 200 and r.headers["Content-Type"] == OCI_MANIFEST
        assert r.headers["Docker-Content-Digest"] == oci
    assert c.request("GET", "/v2/neg/app/manifests/oci").body == oci_body  # no Accept: as stored
    r = c.request("GET", "/v2/neg/app/manifests/docker", headers={"Accept": DOCKER_MANIFEST})
    assert r.status == 200 and r.headers["Content-Type"] == DOCKER_MANIFEST and r.headers[
        "Docker-Content-Digest"] == docker
    # An index asked for by a client that takes single manifests only: its linux/amd64 manifest.
    oci_size = len(oci_body)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": oci, "size": oci_size,
         "platform": {"os": "linux", "architecture": "amd64"}}]}
    r = push_manifest(c, "neg/app", "multi", index)
    assert r.status == 201, r.body
    r = c.request("GET", "/v2/neg/app/manifests/multi", headers={"Accept": OCI_MANIFEST})
    assert r.status == 200 and r.headers["Docker-Content-Digest"] == oci and r.body == oci_body
    r = c.request("GET", "/v2/neg/app/manifests/multi", headers={"Accept": DOCKER_MANIFEST})
    assert r.status == 404 and r.codes() == ["MANIFEST_UNKNOWN"]
    r = c.request("GET", "/v2/neg/app/manifests/multi", headers={"Accept": OCI_INDEX})
    assert r.status == 200 and r.headers["Content-Type"] == OCI_INDEX


def test_tag_query_referrers_unknown_repo_mount_without_from_and_cancel(reg: Server) -> None:
    c = reg.client
    md, body, doc = push_image(c, "spec/a", "1", [b"shared base layer"])
    # ?tag= on a push by digest: the tags exist and come back in OCI-Tag headers.
    r = c.request("PUT", f"/v2/spec/a/manifests/{md}?tag=x&tag=y", body, {"Content-Type": OCI_MANIFEST})
    assert r.status == 201
    assert sorted(v for k, v in r.headers.items() if k.lower() == "oci-tag") == ["x", "y"]
    assert sorted(c.request("GET", "/v2/spec/a/tags/list").json()["tags"]) == ["1", "x", "y"]
    r = c.request("PUT", f"/v2/spec/a/manifests/{md}?tag=bad!tag", body, {"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and r.codes() == ["MANIFEST_INVALID"]
    # Referrers of a repository nobody pushed to yet: an empty index, not a 404.
    r = c.request("GET", f"/v2/spec/never/referrers/{md}")
    assert r.status == 200 and r.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    # Mount without from: the registry finds a repository holding the blob.
    layer = doc["layers"][0]["digest"]
    r = c.request("POST", f"/v2/spec/b/blobs/uploads/?mount={layer}")
    assert r.status == 201 and r.headers["Docker-Content-Digest"] == layer
    assert c.request("HEAD", f"/v2/spec/b/blobs/{layer}").status == 200
    # ...and an unknown blob falls back to an upload session.
    r = c.request("POST", f"/v2/spec/b/blobs/uploads/?mount={digest_of(b'nobody has this')}")
    assert r.status == 202
    loc = r.headers["Location"]
    assert c.request("PATCH", loc, b"some bytes").status == 202
    # Upload cancel.
    assert c.request("DELETE", loc).status == 204
    r = c.request("GET", loc)
    assert r.status == 404 and r.codes() == ["BLOB_UPLOAD_UNKNOWN"]


def test_idle_uploads_expire(reg: Server, tmp_path: Any) -> None:
    c = reg.client
    loc = c.request("POST", "/v2/exp/app/blobs/uploads/").headers["Location"]
    assert c.request("PATCH", loc, b"partial").status == 202
    uploads = os.path.join(reg.root, "_uploads")
    assert len(os.listdir(uploads)) == 1
    deadline = time.time() + 15
    while os.listdir(uploads) and time.time() < deadline:
        time.sleep(0.5)
    assert os.listdir(uploads) == []  # the server's background sweep (--upload-max-age 2s)
    assert c.request("GET", loc).status == 404
    # `berth registry gc` expires them too (on a root no server is running on).
    root = str(tmp_path / "offline")
    shutil.copytree(reg.root, root, ignore=shutil.ignore_patterns("gc.lock"))
    os.makedirs(os.path.join(root, "_uploads", "old"), exist_ok=True)
    with open(os.path.join(root, "_uploads", "old", "data"), "wb") as f:
        f.write(b"stale")
    backdate(os.path.join(root, "_uploads"), seconds=7200)
    out = subprocess.run([sys.executable, "-m", "berth.registry", "gc", "--root", root, "--upload-max-age", "1h"],
                         check=True, capture_output=True, text=True).stdout
    assert json.loads(out)["uploads_expired"] == ["old"]
    assert os.listdir(os.path.join(root, "_uploads")) == []


def test_gc_default_grace_keeps_a_push_in_flight(reg: Server) -> None:
    c = reg.client
    d = push_blob(c, "inflight/app", b"uploaded, manifest still to come")
    out = subprocess.run([sys.executable, "-m", "berth.registry", "gc", "--root", reg.root],
                         check=True, capture_output=True, text=True).stdout
    assert json.loads(out)["blobs_deleted"] == []
    cfg = push_blob(c, "inflight/app", b"{}")
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d,
                       "size": len(b"uploaded, manifest still to come")}]}
    assert push_manifest(c, "inflight/app", "1", doc).status == 201


def test_token_key_persists_and_requests_are_logged(tmp_path: Any) -> None:
    htp = str(tmp_path / "htpasswd")
    write_htpasswd(htp, {"alice": "pw"})
    root = str(tmp_path / "reg")
    srv = Server(root, "--auth", f"token:{htp}")
    c = srv.client
    ch = parse_challenge(c.request("GET", "/v2/").headers["WWW-Authenticate"])
    token = get_token(c, ch, basic("alice", "pw"), scope="repository:keep/app:pull,push")
    push_image(Client(srv.port, {"Authorization": f"Bearer {token}"}), "keep/app", "1", [b"k"])
    log = srv.close()
    key = os.path.join(root, "_auth", "token.key")
    assert os.stat(key).st_mode & 0o777 == 0o600
    srv = Server(root, "--auth", f"token:{htp}", addr=f"127.0.0.1:{srv.port}")
    try:
        r = Client(srv.port, {"Authorization": f"Bearer {token}"}).request("GET", "/v2/keep/app/manifests/1")
        assert r.status == 200  # the token from before the restart still verifies
    finally:
        srv.close()
    lines = [line for line in log.splitlines() if '"PUT /v2/keep/app/manifests/1 HTTP/1.1" 201' in line]
    assert len(lines) == 1 and " - alice [" in lines[0], log
