"""Storage keys for every registry object (see :mod:`berth.registry.model.storage` for the tree)."""

from __future__ import annotations

from berth.registry.model.digests import Digest

BLOBS = "blobs"
REPOSITORIES = "repositories"
UPLOADS = "_uploads"


def blob(d: Digest) -> str:
    return f"{BLOBS}/{d.algorithm}/{d.hex}"


def repo(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def layers_dir(name: str) -> str:
    return f"{repo(name)}/_layers"


def layer_link(name: str, d: Digest) -> str:
    return f"{layers_dir(name)}/{d.algorithm}/{d.hex}"


def revisions_dir(name: str) -> str:
    return f"{repo(name)}/_manifests/revisions"


def revision(name: str, d: Digest) -> str:
    return f"{revisions_dir(name)}/{d.algorithm}/{d.hex}"


def tags_dir(name: str) -> str:
    return f"{repo(name)}/_manifests/tags"


def tag_dir(name: str, tag: str) -> str:
    return f"{tags_dir(name)}/{tag}"


def tag_current(name: str, tag: str) -> str:
    return f"{tag_dir(name, tag)}/current"


def referrers_dir(name: str, subject: Digest) -> str:
    return f"{repo(name)}/_referrers/{subject.algorithm}/{subject.hex}"


def referrers_root(name: str) -> str:
    return f"{repo(name)}/_referrers"


def referrer_entry(name: str, subject: Digest, referrer: Digest) -> str:
    return f"{referrers_dir(name, subject)}/{referrer.algorithm}-{referrer.hex}"


def upload_dir(session_id: str) -> str:
    return f"{UPLOADS}/{session_id}"


def upload_data(session_id: str) -> str:
    return f"{upload_dir(session_id)}/data"


def upload_state(session_id: str) -> str:
    return f"{upload_dir(session_id)}/state"


PROXY = "_proxy"


def proxy_fetch(fetch_id: str) -> str:
    """Where a pull-through fetch streams a blob before it is verified and kept."""
    return f"{PROXY}/{fetch_id}"
