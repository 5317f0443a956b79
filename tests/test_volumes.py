"""Volumes and mounts through the docker CLI and docker-py: data that outlives its container."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile

import docker
import pytest

from berth.fsutil import dir_size
from tests.conftest import Daemon
from tests.imagetools import config_for, layer_tar, save_tar


def test_create_ls_inspect_rm(daemon: Daemon) -> None:
    daemon.cli("volume", "create", "--label", "team=blue", "v-basic")
    assert "v-basic" in daemon.cli("volume", "ls", "-q").stdout.decode().split()
    info = daemon.client().api.inspect_volume("v-basic")
    assert info["Name"] == "v-basic" and info["Driver"] == "local" and info["Scope"] == "local"
    assert info["Labels"] == {"team": "blue"}
    assert info["Mountpoint"] == os.path.join(daemon.data_root, "volumes", "v-basic", "_data")
    assert os.path.isdir(info["Mountpoint"]) and info["CreatedAt"]
    listed = daemon.client().api.volumes(filters={"label": "team=blue"})["Volumes"]
    assert [v["Name"] for v in listed] == ["v-basic"]
    daemon.cli("volume", "rm", "v-basic")
    assert not os.path.exists(info["Mountpoint"])
    r = daemon.cli("volume", "inspect", "v-basic", check=False)
    assert r.returncode != 0 and b"no such volume" in r.stderr


@pytest.mark.parametrize("name", ["bad/name", "..", "a..b", "x"])
def test_bad_volume_names_are_400(daemon: Daemon, name: str) -> None:
    r = daemon.cli("volume", "create", name, check=False)
    assert r.returncode != 0
    err = r.stderr.decode()
    assert "includes invalid characters for a local volume name" in err
    assert '{"message"' not in err  # the CLI decoded Docker's error shape


def test_data_outlives_the_container(daemon: Daemon) -> None:
    daemon.cli("run", "--name", "writer", "-v", "v-data:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    daemon.cli("rm", "-v", "writer")  # -v never removes a named volume
    assert daemon.cli("run", "--rm", "-v", "v-data:/data", "busybox", "cat", "/data/f").stdout == b"kept\n"
    daemon.cli("volume", "rm", "v-data")


def test_in_use_volume_is_409(client: docker.DockerClient) -> None:
    client.volumes.create("v-busy")
    ct = client.containers.create("busybox", ["true"], volumes={"v-busy": {"bind": "/d", "mode": "rw"}})
    try:
        with pytest.raises(docker.errors.APIError) as e:
            client.api.remove_volume("v-busy")
        assert e.value.status_code == 409 and "volume is in use" in str(e.value.explanation)
        with pytest.raises(docker.errors.APIError) as e:
            client.api.remove_volume("v-busy", force=True)
        assert e.value.status_code == 409
        assert "v-busy" not in [v.name for v in client.volumes.list(filters={"dangling": True})]
    finally:
        ct.remove()
    assert "v-busy" in [v.name for v in client.volumes.list(filters={"dangling": True})]
    client.api.remove_volume("v-busy")


def test_read_only_binds_and_volumes(daemon: Daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    host = tmp_path / "host"
    host.mkdir()
    (host / "h").write_text("from host\n")
    r = daemon.cli("run", "--rm", "-v", f"{host}:/h:ro", "busybox", "sh", "-c", "cat /h/h; touch /h/new",
                   check=False)
    assert r.stdout == b"from host\n" and r.returncode != 0
    assert b"Read-only file system" in r.stderr
    assert not (host / "new").exists()
    # read-write bind: writes land on the host
    daemon.cli("run", "--rm", "-v", f"{host}:/h", "busybox", "sh", "-c", "echo back > /h/back")
    assert (host / "back").read_text() == "back\n"
    r = daemon.cli("run", "--rm", "--mount", "type=volume,src=v-ro,dst=/v,readonly", "busybox", "touch", "/v/x",
                   check=False)
    assert r.returncode != 0 and b"Read-only file system" in r.stderr
    daemon.cli("volume", "rm", "v-ro")


def test_missing_bind_source(daemon: Daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "created-by-v"
    daemon.cli("run", "--rm", "-v", f"{missing}:/m", "busybox", "true")
    assert missing.is_dir()  # -v creates it, as Docker does
    gone = tmp_path / "not-there"
    before = daemon.client().api.containers(all=True)
    r = daemon.cli("run", "--rm", "--mount", f"type=bind,source={gone},target=/m", "busybox", "true", check=False)
    assert r.returncode != 0
    assert f"bind source path does not exist: {gone}".encode() in r.stderr
    assert not gone.exists()
    assert daemon.client().api.containers(all=True) == before


def test_copy_up_and_nocopy(daemon: Daemon) -> None:
    out = daemon.cli("run", "--rm", "-v", "v-etc:/etc", "busybox", "cat", "/etc/passwd").stdout
    assert out.startswith(b"root:x:0:0")
    mp = daemon.client().api.inspect_volume("v-etc")["Mountpoint"]
    assert {"group", "passwd"} <= set(os.listdir(mp))  # (and the init layer's mount points, as Docker)
    out = daemon.cli("run", "--rm", "--mount", "type=volume,src=v-empty,dst=/etc,volume-nocopy", "busybox",
                     "ls", "-A", "/etc").stdout
    assert out == b""
    # a volume that already has content is not overwritten
    daemon.cli("run", "--rm", "-v", "v-etc:/data", "busybox", "sh", "-c", "echo mine > /data/passwd")
    out = daemon.cli("run", "--rm", "-v", "v-etc:/etc", "busybox", "cat", "/etc/passwd").stdout
    assert out == b"mine\n"
    daemon.cli("volume", "rm", "v-etc", "v-empty")


def test_volumes_from(daemon: Daemon) -> None:
    daemon.cli("create", "--name", "donor", "-v", "v-shared:/shared", "-v", "/anon", "busybox", "true")
    daemon.cli("run", "--rm", "--volumes-from", "donor", "busybox", "sh", "-c",
               "echo via-from > /shared/f; echo anon > /anon/a")
    out = daemon.cli("run", "--rm", "--volumes-from", "donor:ro", "busybox", "sh", "-c",
                     "cat /shared/f /anon/a; touch /shared/x 2>/dev/null || echo ro").stdout
    assert out == b"via-from\nanon\nro\n"
    daemon.cli("rm", "-v", "donor")
    assert daemon.cli("volume", "ls", "-q", "-f", "name=v-shared").stdout.strip() == b"v-shared"
    daemon.cli("volume", "rm", "v-shared")


def test_anonymous_volume_lifetimes(daemon: Daemon, client: docker.DockerClient) -> None:
    before = {v.name for v in client.volumes.list()}
    # --rm removes the anonymous volumes of the container, never named ones
    daemon.cli("run", "--rm", "-v", "/scratch", "-v", "v-named:/named", "busybox", "true")
    after = {v.name for v in client.volumes.list()}
    assert after - before == {"v-named"}
    # rm without -v keeps the anonymous volume; rm -v removes it
    daemon.cli("create", "--name", "anon1", "-v", "/scratch", "busybox", "true")
    anon = [m["Name"] for m in client.api.inspect_container("anon1")["Mounts"]]
    assert len(anon) == 1 and len(anon[0]) == 64
    assert client.api.inspect_volume(anon[0])["Labels"] == {"com.docker.volume.anonymous": ""}
    daemon.cli("rm", "anon1")
    assert client.api.inspect_volume(anon[0])
    daemon.cli("create", "--name", "anon2", "-v", "/scratch", "busybox", "true")
    anon2 = client.api.inspect_container("anon2")["Mounts"][0]["Name"]
    daemon.cli("rm", "-v", "anon2")
    with pytest.raises(docker.errors.NotFound):
        client.api.inspect_volume(anon2)
    # prune takes anonymous volumes only, unless all=true
    pruned = client.api.prune_volumes()
    assert anon[0] in (pruned["VolumesDeleted"] or []) and "v-named" not in (pruned["VolumesDeleted"] or [])
    pruned = client.api.prune_volumes(filters={"all": "true"})
    assert "v-named" in pruned["VolumesDeleted"]


def test_image_volume_creates_anonymous_volume(client: docker.DockerClient, busybox_tar: str) -> None:
    with tarfile.open(busybox_tar) as tf:
        import json

        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        base = tf.extractfile(manifest[0]["Layers"][0]).read()  # type: ignore[union-attr]
    extra = layer_tar([("srv/", "dir"), ("srv/seed", "file", "seeded\n")])
    cfg = json.loads(config_for([base, extra], cmd=["sh"]))
    cfg["config"]["Volumes"] = {"/srv": {}}
    raw = json.dumps(cfg, sort_keys=True).encode()
    list(client.api.load_image(save_tar([([base, extra], "withvol:1", raw)])))
    ct = client.containers.run("withvol:1", ["cat", "/srv/seed"], detach=True)
    ct.wait()
    assert ct.logs() == b"seeded\n"
    mounts = client.api.inspect_container(ct.id)["Mounts"]
    assert [(m["Type"], m["Destination"]) for m in mounts] == [("volume", "/srv")]
    with open(os.path.join(mounts[0]["Source"], "seed")) as f:
        assert f.read() == "seeded\n"  # copied up from the image
    ct.remove(v=True)
    client.api.remove_image("withvol:1")


def test_tmpfs_mounts_and_tmpfs_volume(client: docker.DockerClient) -> None:
    out = client.containers.run("busybox", ["sh", "-c", "grep ' /t ' /proc/mounts"], remove=True,
                                mounts=[docker.types.Mount("/t", None, type="tmpfs", tmpfs_size=1 << 20)])
    assert out.startswith(b"tmpfs /t tmpfs") and b"size=1024k" in out
    client.volumes.create("v-tmpfs", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=2m"})
    out = client.containers.run("busybox", ["sh", "-c", "grep ' /v ' /proc/mounts; echo x > /v/f; cat /v/f"],
                                remove=True, volumes={"v-tmpfs": {"bind": "/v", "mode": "rw"}})
    assert out.startswith(b"tmpfs /v tmpfs") and out.endswith(b"x\n")
    mp = client.api.inspect_volume("v-tmpfs")["Mountpoint"]
    assert not _is_mountpoint(mp)  # unmounted again once no container uses it
    client.api.remove_volume("v-tmpfs")


def _is_mountpoint(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def test_subpath(daemon: Daemon) -> None:
    daemon.cli("run", "--rm", "-v", "v-sub:/d", "busybox", "sh", "-c", "mkdir -p /d/a/b; echo deep > /d/a/b/f")
    out = daemon.cli("run", "--rm", "--mount", "type=volume,src=v-sub,dst=/x,volume-subpath=a/b", "busybox",
                     "cat", "/x/f").stdout
    assert out == b"deep\n"
    r = daemon.cli("run", "--rm", "--mount", "type=volume,src=v-sub,dst=/x,volume-subpath=../../etc", "busybox",
                   "true", check=False)
    assert r.returncode != 0
    daemon.cli("volume", "rm", "v-sub")


def test_duplicate_mount_point_is_400(client: docker.DockerClient) -> None:
    with pytest.raises(docker.errors.APIError) as e:
        client.api.create_container("busybox", ["true"], host_config=client.api.create_host_config(
            binds=["a1:/same", "a2:/same"]))
    assert e.value.status_code == 400 and "Duplicate mount point: /same" in str(e.value.explanation)


def test_system_df_matches_disk(daemon: Daemon, client: docker.DockerClient) -> None:
    daemon.cli("run", "--name", "df-ct", "-v", "v-df:/d", "busybox", "sh", "-c",
               "head -c 300000 /dev/zero > /d/blob; head -c 5000 /dev/zero > /rwfile")
    df = client.api.df()
    layer_root = os.path.join(daemon.data_root, "overlay")
    on_disk = 0
    for d in os.listdir(layer_root):
        diff = os.path.join(layer_root, d, "diff")
        if d in ("l", ".trash", "empty") or not os.path.isdir(diff) or os.path.exists(os.path.join(layer_root, d,
                                                                                                     "work")):
            continue
        on_disk += dir_size(diff)
    assert df["LayersSize"] == on_disk
    vol = next(v for v in df["Volumes"] if v["Name"] == "v-df")
    assert vol["UsageData"] == {"Size": dir_size(vol["Mountpoint"]), "RefCount": 1}
    assert vol["UsageData"]["Size"] == 300000
    ct = next(c for c in df["Containers"] if c["Names"] == ["/df-ct"])
    upper = client.api.inspect_container("df-ct")["GraphDriver"]["Data"]["UpperDir"]
    assert ct["SizeRw"] == dir_size(upper) >= 5000
    cli = daemon.cli("system", "df", "--format", "{{.Type}} {{.TotalCount}}").stdout.decode()
    assert "Local Volumes" in cli
    daemon.cli("rm", "-v", "df-ct")
    daemon.cli("volume", "rm", "v-df")


def test_system_prune_volumes_frees_what_it_says(daemon: Daemon, client: docker.DockerClient) -> None:
    daemon.cli("run", "--name", "pr-ct", "-v", "/anon-prune", "busybox", "sh", "-c",
               "head -c 100000 /dev/zero > /anon-prune/f")
    anon = client.api.inspect_container("pr-ct")["Mounts"][0]
    out = daemon.cli("system", "prune", "-f", "--volumes").stdout.decode()
    assert "pr-ct" not in daemon.cli("ps", "-a", "--format", "{{.Names}}").stdout.decode()
    assert anon["Name"] in out
    assert not os.path.exists(anon["Source"])


def test_data_survives_berthd_restart(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.cli("run", "--rm", "-v", "v-restart:/d", "busybox", "sh", "-c", "echo durable > /d/f")
    d.stop()
    d.start()
    assert d.cli("run", "--rm", "-v", "v-restart:/d", "busybox", "cat", "/d/f").stdout == b"durable\n"


def test_export_import_roundtrip_while_paused(daemon: Daemon) -> None:
    berth = [sys.executable, "-m", "berth.cli.main", "-H", daemon.host]
    daemon.cli("run", "-d", "--name", "exp-ct", "-v", "v-exp:/d", "busybox", "sh", "-c",
               "mkdir -p /d/sub; echo one > /d/sub/f; ln -s sub/f /d/link; "
               "i=0; while true; do i=$((i+1)); echo $i > /d/counter; sleep 0.05; done")
    try:
        data = subprocess.run([*berth, "volume", "export", "v-exp"], capture_output=True, check=True,
                              timeout=60).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            names = set(tf.getnames())
            assert {"sub", "sub/f", "link", "counter"} <= names
            assert tf.getmember("link").issym() and tf.getmember("link").linkname == "sub/f"
            assert tf.extractfile("sub/f").read() == b"one\n"  # type: ignore[union-attr]
        st = daemon.client().api.inspect_container("exp-ct")["State"]
        assert st["Status"] == "running"  # resumed after the export
        # import into a new volume and read it from a container
        r = subprocess.run([*berth, "volume", "import", "v-imp", "-"], input=data, capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        out = daemon.cli("run", "--rm", "-v", "v-imp:/d", "busybox", "cat", "/d/link").stdout
        assert out == b"one\n"
        # importing into a volume a running container uses is refused
        r = subprocess.run([*berth, "volume", "import", "v-exp", "-"], input=data, capture_output=True, timeout=60)
        assert r.returncode != 0 and b"in use" in r.stderr
    finally:
        daemon.cli("rm", "-f", "exp-ct")
        daemon.cli("volume", "rm", "v-exp", "v-imp", check=False)


def test_pause_unpause(client: docker.DockerClient) -> None:
    ct = client.containers.run("busybox", ["sleep", "60"], detach=True)
    ct.pause()
    ct.reload()
    assert ct.status == "paused" and ct.attrs["State"]["Paused"]
    with pytest.raises(docker.errors.APIError) as e:
        ct.pause()
    assert e.value.status_code == 409
    ct.unpause()
    ct.reload()
    assert ct.status == "running"
    with pytest.raises(docker.errors.APIError) as e:
        ct.unpause()
    assert e.value.status_code == 409
    ct.pause()
    ct.remove(force=True)  # a paused container can still be force-removed
