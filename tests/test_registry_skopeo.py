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
