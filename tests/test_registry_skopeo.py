"""Interop: skopeo (Debian's package) copies images to and from Berth's registry, inspects them,
lists tags and deletes them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.test_registry_e2e import Reg

SKOPEO = shutil.which("skopeo")
pytestmark = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")


def skopeo(policy: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SKOPEO, "--policy", policy, *args], capture_output=True, timeout=120)


def test_skopeo_copy_inspect_tags_delete(busybox_tar: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    reg = Reg(None)
    try:
        dest = f"docker://{reg.addr}/skopeo/bb"
        r = skopeo(str(policy), "copy", "--dest-tls-verify=false", f"docker-archive:{busybox_tar}", dest + ":v1")
        assert r.returncode == 0, r.stderr
        r = skopeo(str(policy), "copy", "--src-tls-verify=false", "--dest-tls-verify=false", dest + ":v1",
                   dest + ":v2")
        assert r.returncode == 0, r.stderr
        r = skopeo(str(policy), "inspect", "--tls-verify=false", dest + ":v1")
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        assert info["Architecture"] == "amd64" and len(info["Layers"]) == 1
        r = skopeo(str(policy), "list-tags", "--tls-verify=false", dest)
        assert r.returncode == 0, r.stderr
        assert sorted(json.loads(r.stdout)["Tags"]) == ["v1", "v2"]
        out = tmp_path / "oci"
        r = skopeo(str(policy), "copy", "--src-tls-verify=false", dest + ":v2", f"oci:{out}:v2")
        assert r.returncode == 0, r.stderr
        assert os.path.exists(out / "index.json")
        r = skopeo(str(policy), "delete", "--tls-verify=false", dest + ":v1")
        assert r.returncode == 0, r.stderr
        r = skopeo(str(policy), "inspect", "--tls-verify=false", dest + ":v1")
        assert r.returncode != 0
    finally:
        reg.close()


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def test_skopeo_and_docker_get_the_manifest_format_they_ask_for(busybox_tar: str, tmp_path, daemon) -> None:  # type: ignore[no-untyped-def]
    """An image pushed as OCI is served as OCI and one pushed as Docker schema 2 as schema 2, to
    skopeo (which asks for both) and to the docker CLI through berthd; a client that accepts only
    the other format gets the spec's 404 rather than bytes of a type it did not ask for."""
    import urllib.error
    import urllib.request

    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    reg = Reg(None)
    try:
        for fmt, media in (("oci", OCI_MANIFEST), ("v2s2", DOCKER_MANIFEST)):
            dest = f"docker://{reg.addr}/fmt/{fmt}:v1"
            r = skopeo(str(policy), "copy", "--dest-tls-verify=false", "--format", fmt,
                       f"docker-archive:{busybox_tar}", dest)
            assert r.returncode == 0, r.stderr
            r = skopeo(str(policy), "inspect", "--raw", "--tls-verify=false", dest)
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)["mediaType"] == media
            other = DOCKER_MANIFEST if media == OCI_MANIFEST else OCI_MANIFEST
            req = urllib.request.Request(f"http://{reg.addr}/v2/fmt/{fmt}/manifests/v1", headers={"Accept": media})
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.headers["Content-Type"] == media
            req = urllib.request.Request(f"http://{reg.addr}/v2/fmt/{fmt}/manifests/v1", headers={"Accept": other})
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(req, timeout=10)
            assert e.value.code == 404
            assert json.loads(e.value.read())["errors"][0]["code"] == "MANIFEST_UNKNOWN"
            # the docker CLI, through berthd, pulls either format and runs it
            ref = f"{reg.addr}/fmt/{fmt}:v1"
            daemon.cli("pull", ref)
            assert daemon.cli("run", "--rm", ref, "echo", "ran-" + fmt).stdout.strip() == b"ran-" + fmt.encode()
            daemon.cli("rmi", ref)
    finally:
        reg.close()
