"""``n``/``last`` pagination shared by the tag list and the catalog, with the spec's ``Link`` header."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

# Even an explicit ``n`` is capped so one request cannot ask for an unbounded response.
MAX_PAGE = 10000


def page(items: list[str], request: web.Request) -> tuple[list[str], dict[str, str]]:
    """Items after ``last`` (lexically), at most ``n`` of them, and a Link header when more remain."""
    last = request.query.get("last")
    n_raw = request.query.get("n")
    n: int | None = None
    if n_raw is not None:
        try:
            n = max(0, int(n_raw))
        except ValueError:
            n = None  # a malformed n is ignored rather than failing the listing
    if last:
        items = [i for i in items if i > last]
    limit = min(n, MAX_PAGE) if n is not None else None
    if limit is None:
        return items, {}
    out = items[:limit]
    headers: dict[str, str] = {}
    if len(items) > limit and out:
        query = urlencode({"n": str(limit), "last": out[-1]})
        headers["Link"] = f'<{request.path}?{query}>; rel="next"'
    return out, headers
