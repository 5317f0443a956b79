"""Filters as Docker has them on every list and prune endpoint: each documented key works, an
unknown key or a bad value is a 400 in Docker's words and changes nothing, and ``name``
patterns are RE2 (linear time), so a hostile pattern cannot stall the daemon."""

from __future__ import annotations

import json
import threading
import time

import docker
import pytest

from berth import gotime
from berth.errors import InvalidParameter
from berth.filters import familiar_match, glob
from tests.conftest import Daemon


def _ids(client: docker.DockerClient) -> set[str]:
    return {c["Id"] for c in client.api.containers(all=True)}


# -- refusals: unknown keys, bad values, bad JSON --------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "filters", "message"), [
    ("post", "/containers/prune", {"bogus": ["x"]}, "invalid filter 'bogus'"),
    ("post", "/containers/prune", {"until": ["soon"]}, 'failed to parse value as time or duration: "soon"'),
    ("post", "/containers/prune", {"until": ["1h", "2h"]}, "more than one until filter specified"),
    ("post", "/containers/prune", {"status": ["exited"]}, "invalid filter 'status'"),
    ("post", "/images/prune", {"dangling": ["maybe"]}, "invalid filter 'dangling=[maybe]'"),
    ("post", "/images/prune", {"until": ["2024-13-01"]}, None),
    ("post", "/images/prune", {"reference": ["x"]}, "invalid filter 'reference'"),
    ("post", "/volumes/prune", {"all": ["maybe"]},
     'invalid filter \'all\': strconv.ParseBool: parsing "maybe": invalid syntax'),
    ("post", "/volumes/prune", {"until": ["1h"]}, "invalid filter 'until'"),
    ("post", "/networks/prune", {"dangling": ["true"]}, "invalid filter 'dangling'"),
    ("post", "/networks/prune", {"until": ["x"]}, 'failed to parse value as time or duration: "x"'),
    ("post", "/build/prune", {"colour": ["x"]}, "invalid filter 'colour'"),
    ("get", "/containers/json", {"colour": ["red"]}, "invalid filter 'colour'"),
    ("get", "/containers/json", {"status": ["sleepy"]}, "invalid filter 'status=sleepy'"),
    ("get", "/containers/json", {"health": ["fine"]}, "Unrecognised filter value for health: fine"),
    ("get", "/containers/json", {"exited": ["x"]}, 'strconv.Atoi: parsing "x": invalid syntax'),
    ("get", "/containers/json", {"is-task": ["1"]}, "invalid filter 'is-task=[1]'"),
    ("get", "/containers/json", {"publish": ["80:80"]}, "filter for 'publish' should not contain ':': 80:80"),
    ("get", "/containers/json", {"name": ["(unclosed"]}, None),
    ("get", "/images/json", {"dangling": ["yes"]}, "invalid filter 'dangling=[yes]'"),
    ("get", "/images/json", {"reference": ["[a-"]}, "syntax error in pattern"),
    ("get", "/images/json", {"label!": ["a"]}, "invalid filter 'label!'"),
    ("get", "/volumes", {"dangling": ["maybe"]}, "invalid filter 'dangling=[maybe]'"),
    ("get", "/volumes", {"until": ["1h"]}, "invalid filter 'until'"),
    ("get", "/networks", {"type": ["fancy"]}, "invalid filter: 'type'='fancy'"),
    ("get", "/networks", {"colour": ["x"]}, "invalid filter 'colour'"),
    ("get", "/events", {"colour": ["x"]}, "invalid filter 'colour'"),
    ("get", "/containers/json", "{not json", "invalid filter"),
    ("get", "/containers/json", '{"name": "x"}', "invalid filter"),
])
def test_bad_filters_are_400_and_change_nothing(client: docker.DockerClient, method: str, path: str,
                                               filters: object, message: str | None) -> None:
    stopped = client.containers.create("busybox", ["true"])
    vol = client.volumes.create()
    try:
        before = (_ids(client), {v.name for v in client.volumes.list()}, len(client.api.images(all=True)))
        params = {"filters": filters if isinstance(filters, str) else json.dumps(filters)}
        if path == "/events":
            params["until"] = str(time.time())
        r = getattr(client.api, "_" + method)(client.api._url(path), params=params)
        assert r.status_code == 400, r.text
        if message is not None:
            assert r.json()["message"] == message
        assert (_ids(client), {v.name for v in client.volumes.list()}, len(client.api.images(all=True))) == before
    finally:
        stopped.remove()
        vol.remove()


def test_cli_words_for_a_bad_filter(daemon: Daemon) -> None:
    r = daemon.cli("container", "prune", "-f", "--filter", "colour=red", check=False)
    assert r.returncode != 0 and "invalid filter 'colour'" in r.stderr.decode()
    r = daemon.cli("ps", "--filter", "name=(", check=False)
    assert r.returncode != 0 and "invalid filter 'name=('" in r.stderr.decode()


# -- container prune: until, label, label! -------------------------------------------------------------
def test_container_prune_until_and_labels(daemon: Daemon, client: docker.DockerClient) -> None:
    old = client.containers.create("busybox", ["true"], labels={"keep": "yes"})
    old_plain = client.containers.create("busybox", ["true"])
    time.sleep(1.1)
    cut = time.time()
    time.sleep(1.1)
    new = client.containers.create("busybox", ["true"])
    new_kept = client.containers.create("busybox", ["true"], labels={"keep": "no"})
    try:
        # nothing is older than an hour: a duration is "that long before now"
        assert client.api.prune_containers(filters={"until": "1h"})["ContainersDeleted"] == []
        out = daemon.cli("container", "prune", "-f", "--filter", f"until={cut:.3f}",
                         "--filter", "label!=keep=yes").stdout.decode()
        assert old_plain.id in out and old.id not in out and new.id not in out
        assert _ids(client) >= {old.id, new.id, new_kept.id} and old_plain.id not in _ids(client)
        deleted = client.api.prune_containers(filters={"label": ["keep"]})["ContainersDeleted"]
        assert set(deleted) == {old.id, new_kept.id}
        assert new.id in _ids(client)
    finally:
        for c in (old, old_plain, new, new_kept):
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass


# -- container list ----------------------------------------------------------------------------------------
def test_container_list_filters(daemon: Daemon, client: docker.DockerClient) -> None:
    vol = client.volumes.create("flt-vol")
    a = client.containers.run("busybox", ["sh", "-c", "exit 3"], name="myfoo1", detach=True, labels={"tier": "a"},
                              volumes={"flt-vol": {"bind": "/data", "mode": "rw"}})
    a.wait()
    b = client.containers.run("busybox", ["sleep", "60"], name="flt-run", detach=True, labels={"tier": "b"},
                              healthcheck={"Test": ["CMD", "true"], "Interval": 200_000_000})
    c = client.containers.create("busybox", ["true"], name="flt-created", network_mode="none")
    try:
        def names(**flt: object) -> set[str]:
            return {x.name for x in client.containers.list(all=True, filters=flt)}

        assert names(name="foo") == {"myfoo1"}  # a substring, as a regular expression
        assert names(name="^/myfoo1$") == {"myfoo1"} and names(name="^myfoo1$") == {"myfoo1"}
        assert names(name="flt-(run|created)$") == {"flt-run", "flt-created"}
        assert names(id=a.id[:10]) == {"myfoo1"}
        assert names(exited=3) == {"myfoo1"} and names(exited=0) == set()  # a created container never exited
        assert names(status="created") >= {"flt-created"} and "myfoo1" not in names(status="created")
        assert names(label="tier") >= {"myfoo1", "flt-run"} and names(label="tier=b") == {"flt-run"}
        assert names(volume="flt-vol") == {"myfoo1"} and names(volume="/data") == {"myfoo1"}
        assert names(network="none") == {"flt-created"}
        assert names(health="none") >= {"myfoo1", "flt-created"} and "flt-run" not in names(health="none")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and names(health="healthy") != {"flt-run"}:
            time.sleep(0.1)
        assert names(health="healthy") == {"flt-run"}
        assert names(**{"is-task": "true"}) == set() and names(**{"is-task": "false"}) >= {"myfoo1"}
        assert names(publish="80") == set() and names(expose="8000-8010/udp") == set()
        assert names(ancestor="busybox") >= {"myfoo1", "flt-run", "flt-created"}
        assert names(ancestor="nosuchimage") == set()
        # newest first: a, b, c were made in that order
        assert {"myfoo1", "flt-run"} <= names(before="flt-created") and "flt-created" not in names(before="flt-created")
        assert names(since="myfoo1") >= {"flt-run", "flt-created"} and "myfoo1" not in names(since="myfoo1")
        with pytest.raises(docker.errors.NotFound):
            client.containers.list(all=True, filters={"before": "no-such-container"})
        # without all, only running ones; a status filter implies all
        assert {x.name for x in client.containers.list(filters={"label": "tier"})} == {"flt-run"}
        out = daemon.cli("ps", "--filter", "name=foo", "--filter", "status=exited", "--format", "{{.Names}}")
        assert out.stdout.decode().split() == ["myfoo1"]
    finally:
        for x in (a, b, c):
            x.remove(force=True)
        vol.remove()


def test_hostile_name_pattern_does_not_stall_the_daemon(daemon: Daemon, client: docker.DockerClient) -> None:
    long_name = "a" * 4000 + "-x"
    ct = client.containers.create("busybox", ["true"], name=long_name)
    pings: list[float] = []
    stop = threading.Event()
    pinger = daemon.client()

    def ping() -> None:
        while not stop.is_set():
            t = time.monotonic()
            pinger.ping()
            pings.append(time.monotonic() - t)
            time.sleep(0.02)

    th = threading.Thread(target=ping, daemon=True)
    th.start()
    try:
        time.sleep(0.1)
        for pattern in ("(a+)+$", "(a|aa)+$", "(a*)*b", "^(a|a?)+$"):  # exponential for a backtracking engine
            assert client.containers.list(all=True, filters={"name": pattern}) == []
        time.sleep(0.1)
    finally:
        stop.set()
        th.join(10)
        ct.remove()
    assert pings and max(pings) < 0.5, f"/_ping took up to {max(pings):.2f}s"
    assert [x.name for x in client.containers.list(all=True, filters={"name": "a{1000}-x$"})] == []  # gone


# -- images --------------------------------------------------------------------------------------------
def test_image_filters_and_prune(daemon: Daemon, client: docker.DockerClient) -> None:
    base = client.containers.create("busybox", ["true"])
    holder = client.containers.run("busybox", ["sleep", "60"], detach=True)  # keeps busybox in use
    try:
        keep = base.commit("flt/keep", "1", changes=["LABEL keep=yes"])
        drop = base.commit("flt/drop", "1")
        client.api.tag(drop.id, "other-drop", "2")
        tags = lambda **f: sorted(t for i in client.api.images(filters=f) for t in i["RepoTags"])  # noqa: E731
        assert tags(reference="flt/*") == ["flt/drop:1", "flt/keep:1"]
        assert "flt/keep:1" not in tags(reference="*")  # "*" does not cross "/"
        assert tags(reference="other-*") == ["other-drop:2"]  # only the matching tag of that image is listed
        assert tags(reference="flt/[j-l]eep") == ["flt/keep:1"]
        assert tags(label="keep=yes") == ["flt/keep:1"]
        assert "flt/keep:1" in tags(since="busybox") and "busybox:latest" not in tags(since="busybox")
        assert "busybox:latest" in tags(before="flt/keep:1")
        assert "flt/keep:1" not in tags(until="1h") and "flt/keep:1" in tags(until="-1h")
        assert tags(dangling="1") == [] and "flt/keep:1" in tags(dangling="0")
        with pytest.raises(docker.errors.NotFound):
            client.api.images(filters={"before": "no/such:image"})
        # prune: nothing created over an hour ago; then every unused image without keep=yes
        assert client.api.prune_images(filters={"dangling": False, "until": "1h"})["ImagesDeleted"] == []
        out = daemon.cli("image", "prune", "-a", "-f", "--filter", "label!=keep=yes").stdout.decode()
        assert drop.id in out and keep.id not in out
        remaining = {i["Id"] for i in client.api.images()}
        assert keep.id in remaining and drop.id not in remaining
        assert any("busybox:latest" in (i["RepoTags"] or []) for i in client.api.images())  # in use: kept
    finally:
        holder.remove(force=True)
        base.remove()
        for ref in ("flt/keep:1", "flt/drop:1", "other-drop:2"):
            try:
                client.api.remove_image(ref)
            except docker.errors.NotFound:
                pass


# -- volumes and networks ------------------------------------------------------------------------------------
def test_volume_filters_and_prune(client: docker.DockerClient) -> None:
    a = client.volumes.create("fltv-alpha", labels={"keep": "yes"})
    b = client.volumes.create("fltv-beta")
    try:
        names = lambda **f: {v.name for v in client.volumes.list(filters=f)}  # noqa: E731
        assert names(name="fltv-") == {"fltv-alpha", "fltv-beta"} and names(name="^fltv-b") == {"fltv-beta"}
        assert names(name="^fltv-.*ta$") == {"fltv-beta"}
        assert "fltv-alpha" in names(dangling="1") and "fltv-alpha" not in names(dangling="false")
        assert names(label="keep=yes") == {"fltv-alpha"} and "fltv-alpha" in names(driver="local")
        out = client.api.prune_volumes(filters={"all": "true", "label!": "keep=yes"})["VolumesDeleted"] or []
        assert "fltv-beta" in out and "fltv-alpha" not in out
        assert "fltv-alpha" in names()
    finally:
        for v in (a, b):
            try:
                v.remove()
            except docker.errors.NotFound:
                pass


def test_network_filters(client: docker.DockerClient) -> None:
    names = lambda **f: {n["Name"] for n in client.api.networks(filters=f)}  # noqa: E731
    assert names() >= {"none", "host"}
    assert names(name="ho") == {"host"} and names(driver="null") == {"none"}
    assert names(type="builtin") >= {"none", "host"} and names(type="custom") == set()
    assert names(dangling="true") == set() and names(dangling="false") >= {"none", "host"}
    assert client.api.prune_networks(filters={"until": "10m", "label!": "x"})["NetworksDeleted"] == []


# -- the parsers themselves ------------------------------------------------------------------------------
NOW = 1_700_000_000.0


@pytest.mark.parametrize(("value", "expected"), [
    ("10m", NOW - 600), ("1h30m", NOW - 5400), ("-1.5h", NOW + 5400), ("300ms", NOW - 1),
    ("0", 0.0), ("1700000000", 1_700_000_000.0), ("1700000000.5", 1_700_000_000.5),
    ("2023-11-14T22:13:20Z", NOW), ("2023-11-14T22:13:20.25+01:00", NOW - 3600 + 0.25),
    ("2023-11-14T22:13+02:00", NOW - 7200 - 20), ("2023-11-14Z", NOW - 80000),
])
def test_until_values(value: str, expected: float) -> None:
    assert gotime.parse_timestamp(value, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["soon", "10x", "", "1h-", "2023-13-01", "-5"])
def test_until_refusals(value: str) -> None:
    with pytest.raises(ValueError):
        gotime.parse_timestamp(value, NOW)


@pytest.mark.parametrize(("pattern", "ref", "expected"), [
    ("busy*", "busybox:latest", True), ("busybox", "busybox:latest", True), ("*", "foo/bar:1", False),
    ("*/*", "foo/bar:1", True), ("b?x:*", "box:1", True), ("[^a-c]*", "box", False), ("[a-c]*", "box", True),
    ("localhost:5000/*", "localhost:5000/app:v1", True), ("app", "localhost:5000/app:v1", False),
    ("\\*", "*", True), ("[z-a]", "a", False),
])
def test_reference_globs(pattern: str, ref: str, expected: bool) -> None:
    assert familiar_match(pattern, ref) is expected


@pytest.mark.parametrize("pattern", ["[", "[]", "[a-", "\\", "[\\"])
def test_bad_globs(pattern: str) -> None:
    with pytest.raises(InvalidParameter, match="syntax error in pattern"):
        glob(pattern)
