"""Reproducible by default: the same context built on two fresh data roots gives the same image
ID and byte-identical ``docker save``; ``timestamps=now`` / BERTH_REPRODUCIBLE=0 give Docker's
wall-clock behaviour."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Daemon, _daemon_fixture
from tests.test_build import api_build, ctx_tar, errors

DOCKERFILE = """FROM busybox
ENV PATH=/usr/local/bin:/bin:/usr/bin
RUN mkdir -p /data/a && echo one > /data/a/f && touch /data/b && ln -s a /data/c && rm -f /etc/motd
WORKDIR /srv/app
COPY app/ ./
RUN echo "built at $(date +%s%N)" > /dev/null && echo same > note
LABEL org.example.k=v
CMD ["cat", "/srv/app/note"]
"""


@pytest.fixture
def second_daemon(busybox_tar: str, monitor: str) -> Iterator[Daemon]:
    yield from _daemon_fixture("overlay", busybox_tar, monitor)


FILES = {"Dockerfile": DOCKERFILE, "app/main.sh": "echo main\n", "app/lib/util.sh": "echo util\n"}


def _build(d: Daemon, tag: str, mtime: int = 1_700_000_000, **kw: object) -> str:
    msgs = api_build(d.client(), ctx_tar(FILES, mtime=mtime), tag=tag, **kw)
    assert not errors(msgs), msgs
    return next(m["aux"]["ID"] for m in msgs if "aux" in m)


def _save(d: Daemon, name: str) -> bytes:
    return b"".join(d.client().api.get_image(name))


def test_two_fresh_roots_same_id_and_save(fresh_daemon: Daemon, second_daemon: Daemon) -> None:
    a = _build(fresh_daemon, "repro:1")
    b = _build(second_daemon, "repro:1", mtime=1_800_000_000)  # a checkout made at another time
    assert a == b
    sa, sb = _save(fresh_daemon, "repro:1"), _save(second_daemon, "repro:1")
    assert len(sa) > 10_000 and sa == sb
    info = fresh_daemon.client().api.inspect_image(a)
    assert info["Created"] == "1970-01-01T00:00:00Z"


def test_source_date_epoch_and_opt_out(fresh_daemon: Daemon) -> None:
    c = fresh_daemon.client()
    epoch = _build(fresh_daemon, "repro:epoch", buildargs={"SOURCE_DATE_EPOCH": "1700000000"})
    assert c.api.inspect_image(epoch)["Created"] == "2023-11-14T22:13:20Z"
    msgs = api_build(c, ctx_tar(FILES), tag="repro:now",
                     buildargs={"BERTH_REPRODUCIBLE": "0"})
    assert not errors(msgs)
    now_id = next(m["aux"]["ID"] for m in msgs if "aux" in m)
    assert now_id != epoch
    assert not c.api.inspect_image(now_id)["Created"].startswith("1970")
    assert "not consumed" not in "".join(m.get("stream", "") for m in msgs)
