"""Rows of the list commands (ps, images, volume ls, network ls) and the click-free code that
fetches and prints them: ``fast.py`` runs the hot commands through here without importing click."""

from __future__ import annotations

from berth.cli.fmt import ago, go_time, headers_for, human_size, label_func, write_rows

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only on the hot path
if TYPE_CHECKING:
    from typing import Any

PS_DEFAULT = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
IMAGES_DEFAULT = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_DIGESTS = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "ID": "IMAGE ID",
                  "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "Containers": "CONTAINERS",
                  "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE"}


def short_id(i: str) -> str:
    return i.split(":", 1)[-1][:12]


PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
              "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
              "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
              "LocalVolumes": "LOCAL VOLUMES", "Platform": "PLATFORM"}


def _ellipsis(s: str, n: int) -> str:
    return s if len(s) <= n else s[:n - 1] + "…"


def format_ports(ports: list[dict[str, Any]] | None) -> str:
    out: list[str] = []
    for p in sorted(ports or [], key=lambda p: (p.get("PrivatePort", 0), p.get("Type", ""), p.get("IP", ""))):
        proto = p.get("Type", "tcp")
        if p.get("PublicPort"):
            ip = p.get("IP") or "0.0.0.0"
            host = f"[{ip}]" if ":" in ip else ip
            out.append(f"{host}:{p['PublicPort']}->{p['PrivatePort']}/{proto}")
        else:
            out.append(f"{p.get('PrivatePort')}/{proto}")
    seen: list[str] = []
    for x in out:
        if x not in seen:
            seen.append(x)
    return ", ".join(seen)


def ps_row(c: dict[str, Any], no_trunc: bool) -> dict[str, Any]:
    names = [n.lstrip("/") for n in c.get("Names") or []]
    if not no_trunc:
        names = [n for n in names if "/" not in n][:1] or names[:1]
    cmd = c.get("Command") or ""
    image = c.get("Image") or ""
    if image.startswith("sha256:") and not no_trunc:
        image = short_id(image)
    size = "0B"
    if "SizeRw" in c or "SizeRootFs" in c:
        size = human_size(c.get("SizeRw") or 0)
        if c.get("SizeRootFs"):
            size += f" (virtual {human_size(c['SizeRootFs'])})"
    labels = c.get("Labels") or {}
    nets = sorted(((c.get("NetworkSettings") or {}).get("Networks") or {}).keys())
    mounts = [m.get("Name") or m.get("Source", "") for m in c.get("Mounts") or []]
    return {
        "ID": c["Id"] if no_trunc else c["Id"][:12],
        "Image": image,
        "Command": f'"{cmd if no_trunc else _ellipsis(cmd, 20)}"',
        "CreatedAt": go_time(c.get("Created") or 0),
        "RunningFor": ago(c.get("Created") or 0),
        "Ports": format_ports(c.get("Ports")),
        "State": c.get("State", ""),
        "Status": c.get("Status", ""),
        "Size": size,
        "Names": ",".join(names),
        "Labels": ",".join(f"{k}={v}" for k, v in labels.items()),
        "Label": label_func(labels),
        "Mounts": ",".join(mounts),
        "Networks": ",".join(nets),
        "LocalVolumes": str(sum(1 for m in c.get("Mounts") or [] if m.get("Driver") == "local")),
        "Platform": None,
    }


def list_containers(client: Any, all_: bool, flt: dict[str, list[str]] | None, fmt: str | None, last: int,
                    latest: bool, no_trunc: bool, quiet: bool, size: bool) -> None:
    limit = 1 if latest else last
    items = client.get("/containers/json", all=all_ or limit > 0 or None, limit=limit if limit > 0 else None,
                       size=size or None, filters=flt)
    rows = [ps_row(c, no_trunc) for c in items]
    default = PS_DEFAULT + ("\t{{.Size}}" if size else "")
    write_rows(rows, fmt, default, headers_for(PS_HEADERS), "ID", quiet)


def image_rows(im: dict[str, Any], no_trunc: bool) -> list[dict[str, Any]]:
    iid = im["Id"] if no_trunc else short_id(im["Id"])
    digests: dict[str, str] = {}
    for rd in im.get("RepoDigests") or []:
        repo, _, dg = rd.partition("@")
        digests.setdefault(repo, dg)
    pairs: list[tuple[str, str]] = []
    for rt in im.get("RepoTags") or []:
        if rt == "<none>:<none>":
            continue
        repo, _, tag = rt.rpartition(":")
        if "/" in tag:  # a registry port, no tag
            repo, tag = rt, "<none>"
        pairs.append((repo, tag))
    if not pairs:
        pairs = [(repo, "<none>") for repo in digests] or [("<none>", "<none>")]
    labels = im.get("Labels") or {}
    out = []
    for repo, tag in pairs:
        size = im.get("Size") or 0
        shared = im.get("SharedSize", -1)
        out.append({
            "Repository": repo, "Tag": tag, "Digest": digests.get(repo, "<none>"), "ID": iid,
            "CreatedSince": ago(im.get("Created") or 0), "CreatedAt": go_time(im.get("Created") or 0),
            "Size": human_size(size), "VirtualSize": human_size(im.get("VirtualSize") or size),
            "SharedSize": human_size(shared) if shared >= 0 else "N/A",
            "UniqueSize": human_size(size - shared) if shared >= 0 else "N/A",
            "Containers": str(im["Containers"]) if im.get("Containers", -1) >= 0 else "N/A",
            "Label": label_func(labels),
        })
    return out


def list_images(client: Any, all_: bool, flt: dict[str, list[str]] | None, fmt: str | None, digests: bool,
                no_trunc: bool, quiet: bool, reference: str | None = None) -> None:
    if reference:
        flt = dict(flt or {})
        flt.setdefault("reference", []).append(reference)
    items = client.get("/images/json", all=all_ or None, filters=flt, digests=digests or None)
    items.sort(key=lambda im: -(im.get("Created") or 0))
    rows = [r for im in items for r in image_rows(im, no_trunc)]
    write_rows(rows, fmt, IMAGES_DIGESTS if digests else IMAGES_DEFAULT, headers_for(IMAGES_HEADERS), "ID", quiet)
