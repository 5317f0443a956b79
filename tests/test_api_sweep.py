"""Every route berthd serves, called once against a real berthd with a container, an image, a
volume, an exec and a registry present, its JSON answer compared with the Engine API v1.45
document: required and declared fields present, the declared types, no ``null`` where Docker
sends ``[]`` or ``{}``, enum values in range.

What still differs and cannot be fixed here is in ALLOWED, each with its reason; an entry that no
longer differs fails the test too, so the list stays true. Skips when the document is absent.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import io
import json
import re
import socket
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import requests

from tests import apispec
from tests.conftest import Daemon, cleanup_daemon, new_daemon

ALLOWED_ROUTES: dict[str, str] = {}
OMITEMPTY = "Docker omits it when empty (omitempty in moby's type)"
NULL_TOO = "Docker sends null here too (dockerd 20.10 observed)"
# Not differences: the document declares the field, Docker's own answer is the same.
# (route, field, what) as fnmatch patterns ("[]" is literal; {a,b} one of a, b) -> why
DOCKER_TOO: dict[tuple[str, str, str], str] = {
    ("DELETE /images/{name}", "[].{Deleted,Untagged}", "missing"): "each item has Deleted or Untagged, not both",
    ("GET /containers/*", "*.{SizeRw,SizeRootFs}", "missing"): "only with size=1",
    ("GET /containers/{id}/json", ".State.Health", "missing"): "only with a healthcheck",
    ("GET /*/json", ".Config.{ArgsEscaped,ExposedPorts,Healthcheck,MacAddress,NetworkDisabled,Shell,StopSignal,"
                   "StopTimeout}", "missing"): OMITEMPTY,
    ("GET /*/json", ".Config.{Entrypoint,Volumes}", "null*"): NULL_TOO,
    ("GET /images/{name}/json", ".Config.Labels", "null*"): NULL_TOO,
    ("GET /containers/{id}/json", ".HostConfig.{Annotations,Init,Mounts,StorageOpt,Sysctls,Tmpfs}", "missing"):
        OMITEMPTY,
    ("GET /containers/{id}/json", ".HostConfig.{Binds,CapAdd,CapDrop,DeviceCgroupRules,DeviceRequests,ExtraHosts,"
                                  "GroupAdd,Links,SecurityOpt,VolumesFrom,MemorySwappiness}", "null*"): NULL_TOO,
    ("GET /distribution/{name}/json", ".Platforms[].{variant,os.version,os.features}", "missing"): OMITEMPTY,
    ("GET /exec/{id}/json", ".ExitCode", "null*"): "Docker's ExitCode is null until the process ends",
    ("GET *", "*.VirtualSize", "missing"): "omitted from API 1.44 on, as Docker does",
    ("GET /images/{name}/history", "[].Tags", "null*"): NULL_TOO + " (an untagged history entry)",
    ("GET /info", ".{DefaultAddressPools,KernelMemoryTCP,ProductLicense}", "missing"): OMITEMPTY,
    ("GET /info", ".{GenericResources,Plugins.Authorization}", "null*"): NULL_TOO,
    ("GET /info", ".Runtimes.{}.{runtimeArgs,status}", "missing"): OMITEMPTY,
    ("GET /info", ".Swarm.{Cluster,Managers,Nodes}", "missing"): OMITEMPTY + " (outside a swarm)",
    ("GET /version", ".Experimental", "missing"): "omitted when false, as the document says",
    ("* /volumes*", "*.{ClusterVolume,Status,UsageData}", "missing"): OMITEMPTY,
    ("GET /system/df", ".Volumes[].{ClusterVolume,Status}", "missing"): OMITEMPTY,
    ("* /volumes*", "*.Options", "null*"): NULL_TOO + " (a volume without options)",
    ("GET /system/df", ".Volumes[].Options", "null*"): NULL_TOO + " (a volume without options)",
    ("GET /volumes", ".Warnings", "null*"): NULL_TOO,
    ("POST /containers/{id}/wait", ".Error", "null*"): NULL_TOO + " (no error)",
    ("GET /networks*", "*.IPAM.Options", "null*"): NULL_TOO,
    ("GET /networks*", "*.Peers", "missing"): OMITEMPTY + " (swarm overlay networks only)",
    ("GET /networks*", "*.IPAM.Config[].{AuxiliaryAddresses,IPRange}", "missing"): OMITEMPTY,
    ("GET *", "*NetworkSettings.Networks.{}.{Aliases,DNSNames,Links}", "null*"):
        NULL_TOO + " (an endpoint on the default bridge, or one given no aliases)",
}
# Differences that remain, each with why it is not fixed here
ALLOWED: dict[tuple[str, str, str], str] = {
}
# Berth's own routes, not in Docker's document
BERTH_ONLY = {"GET /volumes/{name}/export", "PUT /volumes/{name}/import"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Call:
    method: str
    path: str  # the route, as served
    values: tuple[str, ...] = ()  # its path parameters
    query: dict[str, Any] = field(default_factory=dict)
    body: Any = None  # JSON, or bytes sent as a tar
    status: int = 200
    kind: str = "json"  # json | jsonl (a stream of JSON objects) | raw | ws | head

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"

    def url(self, base: str) -> str:
        it = iter(self.values)
        parts = []
        for seg in self.path.split("/"):
            parts.append(quote(next(it), safe="") if seg.startswith("{") else seg)
        return base + "/v1.45" + "/".join(parts)


def _tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def calls(registry: str, exec_id: str, tty_exec_id: str, image_tar: bytes) -> list[Call]:
    """One call per route, in an order that keeps the objects later calls need."""
    pushed = f"{registry}/sweep:1"
    return [
        Call("GET", "/_ping", kind="raw"),
        Call("GET", "/version"),
        Call("GET", "/info"),
        Call("GET", "/system/df"),
        Call("GET", "/events", query={"since": "0", "until": str(int(time.time()) + 1)}, kind="jsonl"),
        Call("GET", "/plugins"),
        Call("GET", "/plugins/{name}/json", ("nope",), status=404),
        Call("POST", "/auth", body={"serveraddress": f"http://{registry}"}),
        Call("POST", "/images/{name}/tag", ("busybox:latest",), query={"repo": f"{registry}/sweep", "tag": "1"},
             status=201, kind="raw"),
        Call("POST", "/images/{name}/push", (f"{registry}/sweep",), query={"tag": "1"}, kind="jsonl"),
        Call("POST", "/images/create", query={"fromImage": pushed}, kind="jsonl"),
        Call("GET", "/distribution/{name}/json", (pushed,)),
        Call("POST", "/images/load", query={"quiet": "0"}, body=image_tar, kind="jsonl"),
        Call("GET", "/images/json"),
        Call("GET", "/images/{name}/json", ("busybox",)),
        Call("GET", "/images/{name}/history", ("busybox",)),
        Call("GET", "/images/{name}/get", ("busybox",), kind="raw"),
        Call("GET", "/images/get", query={"names": "busybox"}, kind="raw"),
        Call("GET", "/containers/json", query={"all": "1"}),
        Call("GET", "/containers/{id}/json", ("sw-run",)),
        Call("GET", "/containers/{id}/json", ("sw-created",)),
        Call("GET", "/containers/{id}/top", ("sw-run",)),
        Call("GET", "/containers/{id}/stats", ("sw-run",), query={"stream": "0"}),
        Call("GET", "/containers/{id}/changes", ("sw-run",)),
        Call("GET", "/containers/{id}/logs", ("sw-run",), query={"stdout": "1"}, kind="raw"),
        Call("POST", "/containers/{id}/attach", ("sw-run",), query={"logs": "1", "stdout": "1"}, kind="raw"),
        Call("GET", "/containers/{id}/attach/ws", ("sw-run",), query={"logs": "1", "stdout": "1"}, kind="ws"),
        Call("GET", "/containers/{id}/export", ("sw-run",), kind="raw"),
        Call("HEAD", "/containers/{id}/archive", ("sw-run",), query={"path": "/data"}, kind="head"),
        Call("GET", "/containers/{id}/archive", ("sw-run",), query={"path": "/etc/hostname"}, kind="raw"),
        Call("PUT", "/containers/{id}/archive", ("sw-run",), query={"path": "/tmp"}, body=_tar("f", b"x"),
             kind="raw"),
        Call("POST", "/containers/{id}/update", ("sw-run",), body={"CpuShares": 512, "PidsLimit": 100}),
        Call("POST", "/containers/{id}/resize", ("sw-tty",), query={"h": "20", "w": "80"}, kind="raw"),
        Call("POST", "/containers/{id}/exec", ("sw-run",), body={"Cmd": ["true"], "AttachStdout": True},
             status=201),
        Call("GET", "/exec/{id}/json", (exec_id,)),
        Call("POST", "/exec/{id}/start", (exec_id,), body={}, kind="raw"),
        Call("GET", "/exec/{id}/json", (exec_id,)),
        Call("POST", "/exec/{id}/resize", (tty_exec_id,), query={"h": "20", "w": "80"}, status=201, kind="raw"),
        Call("POST", "/containers/create", query={"name": "sw-new"},
             body={"Image": "busybox", "Cmd": ["sleep", "60"]}, status=201),
        Call("POST", "/containers/{id}/start", ("sw-new",), status=204, kind="raw"),
        Call("POST", "/containers/{id}/pause", ("sw-new",), status=204, kind="raw"),
        Call("POST", "/containers/{id}/unpause", ("sw-new",), status=204, kind="raw"),
        Call("POST", "/containers/{id}/rename", ("sw-new",), query={"name": "sw-renamed"}, status=204, kind="raw"),
        Call("POST", "/containers/{id}/restart", ("sw-renamed",), query={"t": "0"}, status=204, kind="raw"),
        Call("POST", "/containers/{id}/kill", ("sw-renamed",), status=204, kind="raw"),
        Call("POST", "/containers/{id}/wait", ("sw-renamed",)),
        Call("POST", "/containers/{id}/stop", ("sw-tty",), query={"t": "0"}, status=204, kind="raw"),
        Call("POST", "/commit", query={"container": "sw-run", "repo": "sw-commit", "tag": "1"}, status=201),
        Call("DELETE", "/containers/{id}", ("sw-renamed",), status=204, kind="raw"),
        Call("POST", "/containers/prune"),
        Call("DELETE", "/images/{name}", ("sw-commit:1",)),
        Call("POST", "/images/prune"),
        Call("POST", "/build", query={"t": "sw-built:1"}, body=_tar("Dockerfile", b"FROM busybox\nRUN echo built\n"),
             kind="jsonl"),
        Call("POST", "/build/prune"),
        Call("POST", "/volumes/create", body={"Name": "sw-vol2", "Labels": {"a": "b"}}, status=201),
        Call("GET", "/volumes"),
        Call("GET", "/volumes/{name}", ("sw-vol2",)),
        Call("GET", "/volumes/{name}/export", ("sw-vol",), kind="raw"),
        Call("PUT", "/volumes/{name}/import", ("sw-vol2",), body=_tar("f", b"x"), kind="raw"),
        Call("DELETE", "/volumes/{name}", ("sw-vol2",), status=204, kind="raw"),
        Call("POST", "/volumes/prune"),
        Call("GET", "/networks"),
        Call("GET", "/networks/{id}", ("none",)),
        Call("POST", "/networks/create", body={"Name": "sw-net", "Labels": {"a": "b"}}, status=201),
        Call("GET", "/networks/{id}", ("sw-net",)),
        Call("POST", "/containers/create", query={"name": "sw-netc"}, body={"Image": "busybox", "Cmd": ["true"]},
             status=201),
        Call("POST", "/networks/{id}/connect", ("sw-net",), body={"Container": "sw-netc"}, kind="raw"),
        Call("GET", "/networks/{id}", ("sw-net",)),
        Call("POST", "/networks/{id}/disconnect", ("sw-net",), body={"Container": "sw-netc"}, kind="raw"),
        Call("DELETE", "/containers/{id}", ("sw-netc",), status=204, kind="raw"),
        Call("DELETE", "/networks/{id}", ("sw-net",), status=204, kind="raw"),
        Call("POST", "/networks/prune"),
        Call("GET", "/swarm", status=503),
    ]


class Checker:
    """Compares JSON values with the document's schemas; collects (route, field path, what)."""

    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.found: set[tuple[str, str, str]] = set()

    def check(self, route: str, where: str, value: Any, schema: dict[str, Any]) -> None:
        s = apispec.resolve(self.defs, schema)
        kind = s.get("type") or ("object" if "properties" in s or "additionalProperties" in s else None)
        if value is None:
            if kind is not None and not s.get("x-nullable"):
                self.found.add((route, where, f"null where the document has {kind}"))
            return
        if kind is not None and not _is(value, kind):
            self.found.add((route, where, f"{type(value).__name__} where the document has {kind}"))
            return
        if "enum" in s and value not in s["enum"] and value != "":
            self.found.add((route, where, f"{value!r} is not one of {s['enum']}"))
        if kind == "array":
            for item in value:
                self.check(route, where + "[]", item, s.get("items") or {})
        elif isinstance(value, dict):
            props = s.get("properties") or {}
            for name in s.get("required") or []:
                if name not in value:
                    self.found.add((route, f"{where}.{name}", "missing (required)"))
            for name, sub in props.items():
                if name in value:
                    self.check(route, f"{where}.{name}", value[name], sub)
                else:
                    self.found.add((route, f"{where}.{name}", "missing"))
            extra = s.get("additionalProperties")
            if isinstance(extra, dict):
                for k, v in value.items():
                    if k not in props:
                        self.check(route, where + ".{}", v, extra)


def _matches(found: tuple[str, str, str], pattern: tuple[str, str, str]) -> bool:
    return all(any(fnmatch.fnmatchcase(f, alt.replace("[]", "[[][]]")) for alt in _alternatives(p))
               for f, p in zip(found, pattern, strict=True))


def _alternatives(pattern: str) -> list[str]:
    """``a.{b,c}`` -> ``a.b``, ``a.c`` (``{}`` alone, an additionalProperties key, stays)."""
    m = re.search(r"\{([^{}]+,[^{}]+)\}", pattern)
    if m is None:
        return [pattern]
    return [x for alt in m.group(1).split(",") for x in _alternatives(pattern[:m.start()] + alt + pattern[m.end():])]


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    want = {"string": str, "boolean": bool, "array": list, "object": dict}.get(kind)
    return want is None or isinstance(value, want)


def _schema_for(op: dict[str, Any] | None, status: int) -> dict[str, Any] | None:
    if op is None:
        return None
    resp = (op.get("responses") or {}).get(status) or (op.get("responses") or {}).get(str(status)) or {}
    schema: dict[str, Any] | None = resp.get("schema")
    return schema


async def _ws(daemon: Daemon, url_path: str) -> list[bytes]:
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=daemon.sock)) as s:
        async with s.ws_connect("http://localhost" + url_path) as ws:
            return [m.data async for m in ws]


@pytest.fixture(scope="module")
def sweep_daemon(busybox_tar: str) -> Iterator[tuple[Daemon, str]]:
    registry = f"127.0.0.1:{_free_port()}"
    d = new_daemon(extra=["--registry-addr", registry])
    try:
        d.start()
        with open(busybox_tar, "rb") as f:
            list(d.client().api.load_image(f.read()))
        yield d, registry
    finally:
        cleanup_daemon(d)


def test_every_route_answers_as_the_document_says(sweep_daemon: tuple[Daemon, str], busybox_tar: str) -> None:
    doc = apispec.load()
    if doc is None:
        pytest.skip(f"the Engine API document is not at {apispec.SPEC} (set BERTH_API_SPEC)")
    daemon, registry = sweep_daemon
    c = daemon.client()
    api = c.api
    c.volumes.create("sw-vol", labels={"k": "v"})
    c.containers.run("busybox", ["sh", "-c", "echo hi; exec sleep 600"], name="sw-run", detach=True,
                     volumes={"sw-vol": {"bind": "/data", "mode": "rw"}}, labels={"l": "1"},
                     environment=["A=1"], network_mode="none")
    c.containers.run("busybox", ["sleep", "600"], name="sw-tty", detach=True, tty=True, stdin_open=True)
    c.containers.create("busybox", ["true"], name="sw-created")
    exec_id = api.exec_create("sw-run", ["echo", "x"])["Id"]
    tty_exec_id = api.exec_create("sw-tty", ["sleep", "60"], tty=True)["Id"]
    api.exec_start(tty_exec_id, detach=True, tty=True)
    with open(busybox_tar, "rb") as f:
        image_tar = f.read()

    plan = calls(registry, exec_id, tty_exec_id, image_tar)
    planned = {(call.method, call.path) for call in plan}
    unplanned = [r for r in apispec.served_routes() if r not in planned and r[0] != "*"]
    assert not unplanned, f"routes the sweep does not call yet: {unplanned}"

    ops = apispec.operations(doc)
    checker = Checker(doc["definitions"])
    session: requests.Session = api
    base = api.base_url
    failures = []
    route_problems: set[str] = set()  # routes whose status differed
    for call in plan:
        op = apispec.operation(ops, call.method, call.path)
        if op is None and call.route not in BERTH_ONLY:
            failures.append(f"{call.route}: not in the document")
        url = call.url(base)
        if call.kind == "ws":
            got = asyncio.run(_ws(daemon, url[len(base):] + "?" + "&".join(f"{k}={v}" for k, v in call.query.items())))
            assert got and all(isinstance(m, bytes) for m in got), (call.route, got)
            continue
        headers = {}
        data = None
        if isinstance(call.body, bytes):
            data, headers = call.body, {"Content-Type": "application/x-tar"}
        elif call.body is not None:
            data, headers = json.dumps(call.body).encode(), {"Content-Type": "application/json"}
        resp = session.request(call.method, url, params=call.query, data=data, headers=headers, timeout=60)
        if resp.status_code != call.status:
            route_problems.add(call.route)
            if call.route not in ALLOWED_ROUTES:
                failures.append(f"{call.route}: {resp.status_code} (expected {call.status}): {resp.content[:200]!r}")
            continue
        if call.kind == "head":
            stat = json.loads(base64.b64decode(resp.headers["X-Docker-Container-Path-Stat"]))
            assert set(stat) == {"name", "size", "mode", "mtime", "linkTarget"}, (call.route, stat)
            continue
        if call.kind == "raw":
            continue
        schema = _schema_for(op, call.status)
        ctype = resp.headers.get("Content-Type", "")
        assert ctype.startswith("application/json"), (call.route, ctype)
        values = ([json.loads(line) for line in resp.content.splitlines() if line.strip()] if call.kind == "jsonl"
                  else [resp.json()])
        for v in values:
            if call.kind == "jsonl" and isinstance(v, dict) and "error" in v:
                failures.append(f"{call.route}: {v}")
            if schema is not None:
                checker.check(call.route, "", v, schema)

    found = {f for f in checker.found if f[0] not in ALLOWED_ROUTES}
    patterns = {**DOCKER_TOO, **ALLOWED}
    unexpected = sorted(f for f in found if not any(_matches(f, p) for p in patterns))
    stale: list[object] = sorted(p for p in patterns if not any(_matches(f, p) for f in found))
    route_problems |= {f[0] for f in checker.found}
    stale += sorted(r for r in ALLOWED_ROUTES if r not in route_problems)
    report = "\n".join(f"  {r} {w or '.'}: {what}" for r, w, what in unexpected)
    assert not failures, "\n".join(failures)
    assert not unexpected, f"{len(unexpected)} answers differ from the document:\n{report}"
    assert not stale, f"allowed differences that no longer occur (remove them): {stale}"
