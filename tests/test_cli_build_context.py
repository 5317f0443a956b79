"""``berth build``'s client side: the context tar it sends, with .dockerignore applied."""

from __future__ import annotations

import os
import tarfile

import pytest

from berth.cli.build import context_tar
from berth.cli.errors import CLIError


def _tree(root: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)


def names(root: str, dockerfile: str | None = "Dockerfile", extra: tuple[str, bytes] | None = None) -> set[str]:
    with context_tar(root, dockerfile, extra) as f, tarfile.open(fileobj=f) as tf:
        return set(tf.getnames())


def test_dockerignore_applied_client_side(tmp_path: object) -> None:
    root = str(tmp_path)
    _tree(root, {"Dockerfile": "FROM busybox\n", "app/main.py": "x", "app/cache/big.bin": "y",
                 "node_modules/m/index.js": "z", "secret.key": "s", "keep/secret.key": "k",
                 ".dockerignore": "node_modules\n*.key\n**/cache\n!keep/secret.key\nDockerfile\n.dockerignore\n"})
    got = names(root)
    assert {"app", "app/main.py", "keep", "keep/secret.key", "Dockerfile", ".dockerignore"} <= got
    assert not {"node_modules", "node_modules/m/index.js", "secret.key", "app/cache", "app/cache/big.bin"} & got


def test_no_dockerignore_sends_everything_and_extra_dockerfile(tmp_path: object) -> None:
    root = str(tmp_path)
    _tree(root, {"a/b/c": "1", "d": "2"})
    os.symlink("/etc/passwd", os.path.join(root, "link"))
    got = names(root, None, (".dockerfile.x", b"FROM busybox\n"))
    assert got == {"a", "a/b", "a/b/c", "d", "link", ".dockerfile.x"}
    with context_tar(root, None, None) as f, tarfile.open(fileobj=f) as tf:
        link = tf.getmember("link")
        assert link.issym() and link.linkname == "/etc/passwd" and link.uid == 0  # sent as a link, not followed


def test_bad_dockerignore_is_an_error_line(tmp_path: object) -> None:
    root = str(tmp_path)
    _tree(root, {".dockerignore": "[\n"})
    with pytest.raises(CLIError, match="dockerignore"):
        names(root)
