"""Image creation times: written as RFC 3339 in image configs, read back as Unix seconds for the API.

Apart because both halves of the image service (berth/images/commit.py stamps, berth/images/service.py
reads) use them, and neither may import the other for them; containers, networks and the builder stamp
their records the same way (they import these through berth.images.service, which re-exports them).
"""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace("000Z", "Z")


def parse_created(s: str | None) -> int:
    if not s:
        return 0
    try:
        s = s.rstrip("Z")
        if "." in s:
            head, frac = s.split(".", 1)
            s = head
        return int(datetime.fromisoformat(s).replace(tzinfo=UTC).timestamp())
    except ValueError:
        return 0
