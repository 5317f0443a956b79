"""Fuzzing every route berthd serves with bodies and query values drawn from Docker's Engine API
schema (the v1.45 OpenAPI document), shaped and hostile alike.

Asserted for every request: never a 5xx; every 4xx is ``application/json`` with a ``message``;
and ``/_ping`` keeps answering within 100 ms while the fuzzer runs (a thread pings in a loop).
Derandomized, so a CI failure is the same failure locally.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import apispec
from tests.conftest import Daemon
from tests.fuzzstrategies import HOSTILE, HOSTILE_INT, HOSTILE_STR, TAR_BODY, Schema, archive_variants

EXAMPLES = int(os.environ.get("BERTH_FUZZ_EXAMPLES", "40"))
# Nothing on a request path blocks berthd's event loop for more than ~20 ms (mounts, unmounts,
# layer copies and removals, spec assembly run in threads), so every ping, container lifecycle
# included, is held to 100 ms; BERTH_FUZZ_PING_LIMIT overrides it.
PING_LIMIT = float(os.environ.get("BERTH_FUZZ_PING_LIMIT", "0.1"))  # seconds
REGISTRY = "127.0.0.1:9"  # the discard port: nothing listens, so a pull or login fails at once, locally
# answers Berth gives on purpose, as a Docker engine without the feature does
DELIBERATE = {("*", "/swarm"): 503}
# a registry that cannot be reached is a 500 from dockerd too
REGISTRY_ROUTES = ("/auth", "/images/create", "/images/{name}/push", "/distribution/{name}/json")
STREAMS = ("/attach", "/wait", "/logs", "/stats", "/events", "/export", "/get", "/archive")
# bodies that succeed, which the fuzzer varies a field or two at a time
VALID_BODIES: dict[str, dict[str, Any]] = {
    "/containers/create": {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}},
    "/containers/{id}/exec": {"Cmd": ["true"], "AttachStdout": True},
    "/exec/{id}/start": {"Detach": True},
    "/volumes/create": {"Name": "fz-v2"},
    "/commit": {"Cmd": ["true"]},
}
LIVE: dict[str, Any] = {}  # the id of an exec that exists, the bytes of a valid image archive
# names a path parameter takes most of the time, by the route's first segment
POOLS = {"containers": ["fz-run", "fz-created", "fz-new", "fz_ok"], "images": ["fz:tag", "busybox", "fz-commit"],
         "volumes": ["fz-vol", "fz-v2"], "exec": [], "": ["nope"]}

class Route:
    def __init__(self, method: str, path: str, op: dict[str, Any] | None, schema: Schema) -> None:
        self.method, self.path = method, path
        self.op = op or {}
        self.stream = any(s in path for s in STREAMS) or path == "/exec/{id}/start"
        self.schema = schema
        self.body_schema: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"{self.method} {self.path}"

    def _query_value(self, p: dict[str, Any]) -> st.SearchStrategy[str]:
        kind = p.get("type")
        if p["name"] in ("t", "timeout"):  # bounded: a large (or -1) t legitimately waits that long
            return st.one_of(st.integers(0, 1).map(str), HOSTILE_STR.filter(lambda v: v != "-1"))
        if p["name"] == "filters":
            return st.dictionaries(st.sampled_from(["name", "label", "status", "dangling", "id", "before"]),
                                   st.lists(st.text(max_size=8), max_size=2), max_size=2).map(json.dumps)
        if kind == "boolean":
            return st.one_of(st.sampled_from(["0", "1", "true", "false"]), HOSTILE_STR)
        if kind == "integer":
            return st.one_of(st.integers(-5, 10**6).map(str), HOSTILE_INT.map(str), HOSTILE_STR)
        return st.one_of(st.text(max_size=16), HOSTILE_STR, st.sampled_from(POOLS["containers"] + POOLS["images"]))

    def strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        query: dict[str, st.SearchStrategy[str]] = {}
        body: st.SearchStrategy[Any] = st.one_of(st.none(), HOSTILE)
        binary = False
        for p in self.op.get("parameters", []):
            if p["in"] == "query":
                query[p["name"]] = self._query_value(p)
            elif p["in"] == "body":
                s = self.schema.resolve(p.get("schema") or {})
                if s.get("format") == "binary" or s.get("type") == "string":
                    binary = True
                else:
                    self.body_schema = p["schema"]
                    shaped = self.schema.shaped(p["schema"])
                    example = (p["schema"].get("example"))
                    body = st.one_of(shaped, HOSTILE, *([st.just(example)] if example else []))
        query["zz"] = st.text(max_size=4)  # an unknown parameter: ignored
        base = VALID_BODIES.get(self.path)
        if base is not None and self.body_schema is not None:
            near = self.schema.near(self.body_schema, base)
            body = st.one_of(near, near, near, body)
        if self.path == "/containers/create":
            query["name"] = st.one_of(st.sampled_from(["fz-new", "x\n", "/fz-new", "a", "fz_ok"]), HOSTILE_STR)
        if self.path == "/images/create":  # never a registry but the closed loopback port
            query["fromImage"] = st.text(max_size=10).map(lambda s: f"{REGISTRY}/{s}")
            query["fromSrc"] = st.sampled_from(["-", "http://127.0.0.1:9/x", ""])
        if self.path == "/auth":
            body = st.tuples(body, st.just(0)).map(_loopback_auth)
        names = POOLS.get(self.path.split("/")[1], []) + (["fz-new"] if "/commit" in self.path else [])
        if self.path.startswith("/exec/"):
            names = [LIVE["exec"]]
        pool = st.sampled_from(names or POOLS[""])
        path_values = st.one_of(*[pool] * 6, st.text(min_size=1, max_size=16), HOSTILE_STR.filter(bool))
        if self.path in ("/images/{name}/push", "/distribution/{name}/json"):
            path_values = st.text(max_size=10).map(lambda s: f"{REGISTRY}/{s}")
        return st.fixed_dictionaries({
            "path": st.lists(path_values, min_size=2, max_size=2),
            "query": st.fixed_dictionaries({}, optional=query),
            "body": st.one_of(TAR_BODY, archive_variants(LIVE["archive"])) if binary else body,
            "raw": st.none() if binary or self.path == "/auth" else st.one_of(*[st.none()] * 5, st.binary(max_size=40)),
        })


def _loopback_auth(pair: tuple[Any, int]) -> Any:
    body = pair[0] if isinstance(pair[0], dict) else {}
    # every spelling Go's case-insensitive decoder would take goes: the address is the closed port
    body = {k: v for k, v in body.items() if k.lower() != "serveraddress"}
    return {**body, "serveraddress": f"http://{REGISTRY}", "ServerAddress": f"http://{REGISTRY}"}


def _url_path(template: str, values: list[str]) -> str:
    it = iter(values)
    return re.sub(r"\{[^}]+\}", lambda _m: quote(next(it), safe=""), template)


# A separate process, so the fuzzer's own CPU use (Hypothesis drawing examples holds this
# process's GIL) does not count as the daemon's latency. CLOCK_MONOTONIC is system-wide.
_PING = """
import json, select, socket, sys, time
path, worst, slow, count = sys.argv[1], 0.0, [], 0
while not select.select([sys.stdin], [], [], 0.02)[0]:
    t = time.monotonic()
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(path)
    s.sendall(b"GET /_ping HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    assert data.startswith(b"HTTP/1.1 200"), data
    took = time.monotonic() - t
    count += 1
    worst = max(worst, took)
    if took > 0.02:
        slow.append((t, took))
print(json.dumps({"worst": worst, "slow": slow, "count": count}))
"""


class Pinger:
    """Pings /_ping in a loop from its own process; records the slowest answer."""

    def __init__(self, daemon: Daemon) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _PING, daemon.sock], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.worst = 0.0
        self.count = 0
        self.slow: list[tuple[float, float]] = []

    def finish(self) -> None:
        out, _ = self.proc.communicate("stop\n", timeout=30)
        assert self.proc.returncode == 0, "the ping loop failed"
        got = json.loads(out)
        self.worst, self.slow, self.count = got["worst"], got["slow"], got["count"]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _ensure_targets(daemon: Daemon, busybox_tar: str) -> None:
    c = daemon.client()
    if not any("busybox:latest" in (i.get("RepoTags") or []) for i in c.api.images()):
        with open(busybox_tar, "rb") as f:
            list(c.api.load_image(f.read()))
    c.api.tag("busybox:latest", "fz", "tag")
    names = {n.lstrip("/") for ct in c.api.containers(all=True) for n in ct["Names"]}
    if "fz-run" not in names:
        c.api.create_container("busybox", ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"], name="fz-run")
    if "fz-created" not in names:
        c.api.create_container("busybox", ["echo", "hi"], name="fz-created")
    ct = c.api.inspect_container("fz-run")
    if ct["State"]["Paused"]:
        c.api.unpause("fz-run")
    elif not ct["State"]["Running"]:
        c.api.start("fz-run")
    c.api.create_volume("fz-vol")
    LIVE["exec"] = c.api.exec_create("fz-run", ["true"])["Id"]


@pytest.fixture(scope="module")
def routes() -> list[Route]:
    doc = apispec.load()
    if doc is None:
        pytest.skip(f"the Engine API document is not at {apispec.SPEC} (set BERTH_API_SPEC)")
    schema = Schema(doc)
    ops = apispec.operations(doc)
    return [Route(method if method != "*" else "GET", path, apispec.operation(ops, method, path), schema)
            for method, path in apispec.served_routes()]


@pytest.fixture
def pinger(daemon: Daemon) -> Iterator[Pinger]:
    p = Pinger(daemon)
    try:
        yield p
    finally:
        p.kill()


def _check(route: Route, resp: requests.Response, sent: dict[str, Any]) -> None:
    status = resp.status_code
    deliberate = DELIBERATE.get((route.method, route.path)) or DELIBERATE.get(("*", route.path))
    where = f"{route} {sent!r} -> {status}"
    unreachable = route.path in REGISTRY_ROUTES and REGISTRY.encode() in resp.content
    assert status < 500 or status == deliberate or unreachable, f"{where}: {resp.content[:300]!r}"
    if 400 <= status < 500 and route.method != "HEAD":
        assert resp.headers.get("Content-Type") == "application/json", where
        msg = json.loads(resp.content)
        assert isinstance(msg, dict) and isinstance(msg.get("message"), str) and msg["message"], where


STATS: dict[str, dict[int, int]] = {}
TIMELINE: list[tuple[float, float, str]] = []


def _send(session: requests.Session, base: str, route: Route, req: dict[str, Any]) -> None:
    url = base + "/v1.45" + _url_path(route.path, req["path"])
    body = req["body"]
    if isinstance(body, bytes):
        data, ctype = body, "application/x-tar"
    elif req["raw"] is not None:
        data, ctype = req["raw"], "application/json"
    elif body is None:
        data, ctype = None, None
    else:
        data, ctype = json.dumps(body).encode(), "application/json"
    headers = {"Content-Type": ctype} if ctype else {}
    t0 = time.monotonic()
    try:
        resp = session.request(route.method, url, params=req["query"], data=data, headers=headers, stream=True,
                               timeout=(5, 3 if route.stream else 20))
    except requests.exceptions.ReadTimeout:
        assert route.stream, f"{route} {req!r}: no answer in 20 s"
        return
    try:
        if resp.status_code >= 400 or not route.stream:
            resp.content  # noqa: B018 - read the (small) answer before checking it
        per = STATS.setdefault(repr(route), {})
        per[resp.status_code] = per.get(resp.status_code, 0) + 1
        _check(route, resp, req)
    finally:
        resp.close()
        TIMELINE.append((t0, time.monotonic(), f"{route} {resp.status_code} {str(req)[:300]}"))


def _fuzzer(session: requests.Session, base: str, route: Route) -> Callable[[], None]:
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(req=route.strategy())
    def one(req: dict[str, Any]) -> None:
        _send(session, base, route, req)

    return one


def test_fuzz_every_route(daemon: Daemon, busybox_tar: str, routes: list[Route], pinger: Pinger) -> None:
    c = daemon.client()
    session: requests.Session = c.api
    base = c.api.base_url
    with open(busybox_tar, "rb") as f:
        LIVE["archive"] = f.read()
    t0 = time.monotonic()
    for i, route in enumerate(routes):
        if i % 10 == 0:
            _ensure_targets(daemon, busybox_tar)

        one = _fuzzer(session, base, route)
        if os.environ.get("BERTH_FUZZ_COLLECT"):  # development: report every failing route, not the first
            try:
                one()
            except Exception as e:  # noqa: BLE001
                print(f"FUZZ FAILURE {route}: {str(e)[:1500]}")
        else:
            one()
    elapsed = time.monotonic() - t0
    pinger.finish()
    if os.environ.get("BERTH_FUZZ_COLLECT"):
        for name, per in sorted(STATS.items()):
            print(f"FUZZ STATS {name}: {dict(sorted(per.items()))}")
        for t, took in pinger.slow:
            print(f"SLOW PING {took * 1000:.0f} ms during:")
            for a, b, what in TIMELINE:
                if a < t + took and b > t:
                    print("   ", f"{(b - a) * 1000:.0f} ms", what)
        with open(daemon.log_path, "rb") as src, open("/tmp/fuzz-berthd.log", "wb") as dst:
            dst.write(src.read())
        print(f"FUZZ TIME {elapsed:.1f} s, worst ping {pinger.worst * 1000:.1f} ms")
    worst = pinger.worst
    print(f"fuzz: {elapsed:.0f} s; slowest /_ping {worst * 1000:.0f} ms")
    during = sorted({what for t, took in pinger.slow if took >= PING_LIMIT
                     for a, b, what in TIMELINE if a < t + took and b > t})
    # 99 % of pings within the limit, none near a second: a blocking call on the loop shows in
    # every request that meets it; a lone scheduler hiccup of a loaded 2-core VM does not fail CI
    over = [took for _t, took in pinger.slow if took >= PING_LIMIT]
    assert len(over) <= max(1, pinger.count // 100), (
        f"{len(over)} of {pinger.count} /_ping answers took over {PING_LIMIT * 1000:.0f} ms while fuzzing "
        f"({elapsed:.0f} s), during {during}")
    assert worst < 1.0, f"/_ping took {worst * 1000:.0f} ms while fuzzing, during {during}"
    for ct in c.api.containers(all=True):
        c.api.remove_container(ct["Id"], force=True)

