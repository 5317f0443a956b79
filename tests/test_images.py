"""Images through the docker CLI and docker-py: load, save, import, list, inspect, tag, remove."""

from __future__ import annotations

import io
import json
import os
import tarfile

import docker
import pytest

from tests.conftest import Daemon, store_snapshot
from tests.imagetools import config_for, image_id, layer_tar, load_failure, save_tar


def test_load_list_inspect_history_with_cli(daemon: Daemon, busybox_tar: str, busybox_id: str) -> None:
    out = daemon.cli("load", "-i", busybox_tar).stdout.decode()
    assert "Loaded image: busybox:latest" in out
    listing = daemon.cli("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.decode()
    assert f"busybox:latest {busybox_id.split(':')[1][:12]}" in listing
    inspect = json.loads(daemon.cli("inspect", "busybox").stdout)
    assert inspect[0]["Id"] == busybox_id
    assert inspect[0]["RepoTags"] == ["busybox:latest"]
    assert inspect[0]["Config"]["Cmd"] == ["sh"]
    assert inspect[0]["RootFS"]["Type"] == "layers" and len(inspect[0]["RootFS"]["Layers"]) == 1
    assert inspect[0]["GraphDriver"]["Name"] == "overlay"
    history = daemon.cli("history", "--no-trunc", "--format", "{{.ID}} {{.CreatedBy}}", "busybox").stdout.decode()
    lines = history.strip().splitlines()
    assert lines[0].startswith(busybox_id) and 'CMD ["sh"]' in lines[0]
    assert lines[1].startswith("<missing>") and "mkbusybox" in lines[1]


def test_save_then_load_keeps_the_image_id(daemon: Daemon, busybox_id: str) -> None:
    saved = daemon.cli("save", "busybox").stdout
    with tarfile.open(fileobj=io.BytesIO(saved)) as tf:
        names = set(tf.getnames())
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        layer = tf.extractfile(manifest[0]["Layers"][0]).read()  # type: ignore[union-attr]
    assert {"manifest.json", "index.json", "oci-layout"} <= names
    assert manifest[0]["RepoTags"] == ["busybox:latest"]
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "docker.io/library/busybox:latest"
    # the layer comes back byte for byte: its sha256 is the diff ID in the config
    import hashlib

    inspect = daemon.client().api.inspect_image("busybox")
    assert "sha256:" + hashlib.sha256(layer).hexdigest() == inspect["RootFS"]["Layers"][0]
    daemon.cli("rmi", "busybox")
    try:
        out = daemon.cli("load", input=saved).stdout.decode()
        assert "Loaded image: busybox:latest" in out
        assert daemon.client().api.inspect_image("busybox")["Id"] == busybox_id
    finally:
        daemon.cli("load", input=saved, check=False)


@pytest.mark.parametrize("layout", ["legacy", "oci"])
def test_load_each_layout(client: docker.DockerClient, layout: str) -> None:
    layers = [layer_tar([("etc/", "dir"), (f"etc/{layout}", "file", layout)])]
    raw = config_for(layers, labels={"layout": layout})
    data = save_tar([(layers, f"layout/{layout}:1", raw)], layout=layout)
    out = list(client.api.load_image(data))
    assert {"stream": f"Loaded image: layout/{layout}:1\n"} in out
    assert client.images.get(f"layout/{layout}:1").id == image_id(raw)
    client.api.remove_image(f"layout/{layout}:1")


def test_tag_untag_and_delete(daemon: Daemon, busybox_id: str) -> None:
    daemon.cli("tag", "busybox", "example.com/team/bb:v1")
    c = daemon.client()
    assert "example.com/team/bb:v1" in c.api.inspect_image("busybox")["RepoTags"]
    out = daemon.cli("rmi", "example.com/team/bb:v1").stdout.decode()
    assert out.strip() == "Untagged: example.com/team/bb:v1"
    assert c.api.inspect_image(busybox_id)["RepoTags"] == ["busybox:latest"]
    # by ID with two tags: Docker refuses without force
    daemon.cli("tag", "busybox", "second:tag")
    r = daemon.cli("rmi", busybox_id[7:19], check=False)
    assert r.returncode != 0
    assert "image is referenced in multiple repositories" in r.stderr.decode()
    daemon.cli("rmi", "second:tag")


def test_rmi_in_use_is_409_unless_forced(client: docker.DockerClient) -> None:
    layers = [layer_tar([("bin/", "dir")])]
    data = save_tar([(layers, "inuse:1", None)])
    list(client.api.load_image(data))
    busybox = client.api.inspect_image("busybox")
    # a container made from busybox blocks deleting busybox by ID
    c = client.api.create_container("busybox", ["true"])
    try:
        with pytest.raises(docker.errors.APIError) as e:
            client.api.remove_image(busybox["Id"])
        assert e.value.status_code == 409
        assert "image is being used by stopped container" in str(e.value.explanation)
    finally:
        client.api.remove_container(c["Id"])
    client.api.remove_image("inuse:1")


def test_shared_base_is_stored_once(daemon: Daemon) -> None:
    c = daemon.client()
    marker = os.urandom(64 * 1024)
    base = layer_tar([("data/", "dir"), ("data/base.bin", "file", marker)])
    top_a = layer_tar([("data/a", "file", "a")])
    top_b = layer_tar([("data/b", "file", "b")])
    list(c.api.load_image(save_tar([([base, top_a], "shared/a:1", None)])))
    list(c.api.load_image(save_tar([([base, top_b], "shared/b:1", None)])))
    copies = []
    for root, _dirs, files in os.walk(daemon.data_root):
        for name in files:
            p = os.path.join(root, name)
            if name == "base.bin" and os.path.getsize(p) == len(marker):
                with open(p, "rb") as f:
                    if f.read() == marker:
                        copies.append(p)
    assert len(copies) == 1, copies
    c.api.remove_image("shared/a:1")
    # the base is still needed by b: still on disk
    assert os.path.exists(copies[0])
    c.api.remove_image("shared/b:1")
    assert not os.path.exists(copies[0])


def test_import_with_changes(daemon: Daemon) -> None:
    rootfs = layer_tar([("hello.txt", "file", "imported\n")])
    out = daemon.cli("import", "-c", "ENV FOO=bar", "-c", 'CMD ["/hello.txt"]', "-c", "WORKDIR /srv",
                     "-m", "from a test", "-", "imported:v1", input=rootfs).stdout.decode().strip()
    assert out.startswith("sha256:")
    info = daemon.client().api.inspect_image("imported:v1")
    assert info["Id"] == out
    assert "FOO=bar" in info["Config"]["Env"]
    assert info["Config"]["Cmd"] == ["/hello.txt"]
    assert info["Config"]["WorkingDir"] == "/srv"
    hist = daemon.client().api.history("imported:v1")
    assert hist[0]["Comment"] == "from a test"
    daemon.cli("rmi", "imported:v1")


def test_list_filters_and_prune(client: docker.DockerClient) -> None:
    l1 = [layer_tar([("f1", "file", "1")])]
    raw1 = config_for(l1, labels={"team": "blue"})
    l2 = [layer_tar([("f2", "file", "2")])]
    raw2 = config_for(l2, labels={"team": "red"})
    list(client.api.load_image(save_tar([(l1, "filt/blue:1", raw1), (l2, None, raw2)])))
    ids = {i["Id"] for i in client.api.images(filters={"label": "team=blue"})}
    assert ids == {image_id(raw1)}
    dangling = {i["Id"] for i in client.api.images(filters={"dangling": True})}
    assert image_id(raw2) in dangling and image_id(raw1) not in dangling
    refs = {i["Id"] for i in client.api.images(filters={"reference": "filt/*"})}
    assert refs == {image_id(raw1)}
    with pytest.raises(docker.errors.APIError) as e:
        client.api.images(filters={"bogus": "x"})
    assert e.value.status_code == 400
    pruned = client.api.prune_images()
    assert {"Deleted": image_id(raw2)} in pruned["ImagesDeleted"]
    assert pruned["SpaceReclaimed"] == 1
    client.api.remove_image("filt/blue:1")


def test_bad_reference_is_400(client: docker.DockerClient) -> None:
    with pytest.raises(docker.errors.APIError) as e:
        client.api.tag("busybox", "team/UPPER", "x")
    assert e.value.status_code == 400
    assert "must be lowercase" in str(e.value.explanation)


def test_store_unchanged_after_rejections(daemon: Daemon) -> None:
    before = store_snapshot(daemon)
    c = daemon.client()
    for bad in (b"", b"not a tar at all" * 100):
        load_failure(c.api, bad)
    assert store_snapshot(daemon) == before
