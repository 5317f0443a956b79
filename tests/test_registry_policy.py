"""Per-repository access policy (`--auth-policy`): two users, each with a repository of their own and a
shared one, over Basic and token auth, against a real `berth registry serve` on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from tests.test_registry_proxy import Server, blob_files
from tests.test_registry_server import Client, basic, get_token, parse_challenge, push_image, write_htpasswd

POLICY = """
[groups]
everyone = ["alice", "bob"]

[[allow]]
users = ["alice"]
repositories = ["alice/*"]
actions = ["pull", "push", "delete"]

[[allow]]
users = ["bob"]
repositories = ["{user}/*"]
actions = ["pull", "push"]

[[allow]]
groups = ["everyone"]
repositories = ["shared/*"]
actions = ["pull"]

[[allow]]
users = ["admin"]
repositories = ["*"]
actions = ["*"]

[[allow]]
anonymous = true
repositories = ["public/*"]
actions = ["pull"]
"""

USERS = {"alice": "a-pw", "bob": "b-pw", "admin": "root-pw"}


def start(tmp_path: Any, scheme: str) -> Server:
    htp, pol = str(tmp_path / "htpasswd"), str(tmp_path / "policy.toml")
    write_htpasswd(htp, USERS)
    with open(pol, "w") as f:
        f.write(POLICY)
    return Server(str(tmp_path / "reg"), "--auth", f"{scheme}:{htp}", "--auth-policy", pol)


class TokenClient:
    """Fetches a token per request scope the way clients do (challenge, then /token with Basic)."""

    def __init__(self, port: int, user: str | None) -> None:
        self.port, self.user = port, user
        self.anon = Client(port)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        scope = None
        if path.startswith("/v2/_catalog") and self.user:
            # Anonymous callers may list (public/*), so no challenge comes; a logged-in client asks anyway.
            r = self.anon.request("GET", "/v2/")
            scope = "registry:catalog:*"
        else:
            r = self.anon.request(method, path, body, headers)
            if r.status != 401:
                return r
        ch = parse_challenge(r.headers["WWW-Authenticate"])
        creds = basic(self.user, USERS[self.user]) if self.user else None
        token = get_token(self.anon, ch, creds, scope=scope)
        return Client(self.port, {"Authorization": f"Bearer {token}"}).request(method, path, body, headers)


@pytest.mark.parametrize("scheme", ["htpasswd", "token"])
def test_two_users_own_and_shared_repositories(tmp_path: Any, scheme: str) -> None:
    srv = start(tmp_path, scheme)
    try:
        def as_user(user: str | None) -> Any:
            if scheme == "htpasswd":
                return Client(srv.port, basic(user, USERS[user]) if user else {})
            return TokenClient(srv.port, user)

        alice, bob, admin, anon = as_user("alice"), as_user("bob"), as_user("admin"), as_user(None)
        push_image(admin, "shared/base", "1", [b"base layer"])
        push_image(admin, "public/hello", "1", [b"hello layer"])
        push_image(alice, "alice/app", "1", [b"alice layer"])
        push_image(bob, "bob/app", "1", [b"bob layer"])
        for who in (alice, bob):
            assert who.request("GET", "/v2/shared/base/manifests/1").status == 200
            r = who.request("POST", "/v2/shared/base/blobs/uploads/")
            assert r.status == 403 and r.codes() == ["DENIED"]
        assert alice.request("GET", "/v2/alice/app/manifests/1").status == 200
        r = alice.request("GET", "/v2/bob/app/manifests/1")
        assert r.status == 403 and r.codes() == ["DENIED"]
        r = bob.request("GET", "/v2/alice/app/manifests/1")
        assert r.status == 403 and r.codes() == ["DENIED"]
        before = blob_files(srv.root)
        r = bob.request("POST", "/v2/alice/app/blobs/uploads/?digest=sha256:" + "0" * 64, b"x")
        assert r.status == 403 and blob_files(srv.root) == before
        # Anonymous: public pulls work, the rest is a challenge of the configured scheme.
        assert anon.request("GET", "/v2/public/hello/manifests/1").status == 200
        r = Client(srv.port).request("GET", "/v2/alice/app/manifests/1")
        assert r.status == 401 and r.codes() == ["UNAUTHORIZED"]
        assert r.headers["WWW-Authenticate"].startswith("Basic " if scheme == "htpasswd" else "Bearer ")
        # Wrong credentials.
        r = Client(srv.port, basic("alice", "nope")).request(
            "GET", "/v2/alice/app/manifests/1" if scheme == "htpasswd" else "/token?scope=repository:alice/app:pull")
        assert r.status == 401
        # The catalog shows each caller what it may pull.
        assert alice.request("GET", "/v2/_catalog").json()["repositories"] == ["alice/app", "public/hello",
                                                                               "shared/base"]
        assert bob.request("GET", "/v2/_catalog").json()["repositories"] == ["bob/app", "public/hello",
                                                                             "shared/base"]
        assert anon.request("GET", "/v2/_catalog").json()["repositories"] == ["public/hello"]
    finally:
        srv.close()


def test_token_for_one_repository_does_not_open_another(tmp_path: Any) -> None:
    srv = start(tmp_path, "token")
    try:
        c = Client(srv.port)
        ch = parse_challenge(c.request("GET", "/v2/").headers["WWW-Authenticate"])
        tok = get_token(c, ch, basic("alice", USERS["alice"]), scope="repository:alice/app:pull,push")
        holder = Client(srv.port, {"Authorization": f"Bearer {tok}"})
        push_image(holder, "alice/app", "1", [b"mine"])
        before = blob_files(srv.root)
        r = holder.request("POST", "/v2/bob/app/blobs/uploads/?digest=sha256:" + "1" * 64, b"y")
        assert r.status == 403 and r.codes() == ["DENIED"]
        assert blob_files(srv.root) == before
        # Asking the token service for bob's repository grants nothing.
        tok2 = get_token(c, ch, basic("alice", USERS["alice"]), scope="repository:bob/app:pull,push")
        r = Client(srv.port, {"Authorization": f"Bearer {tok2}"}).request("GET", "/v2/bob/app/tags/list")
        assert r.status == 403
    finally:
        srv.close()


def test_policy_syntax_error_refuses_to_start_and_names_the_line(tmp_path: Any) -> None:
    htp, pol, root = str(tmp_path / "htpasswd"), str(tmp_path / "policy.toml"), tmp_path / "reg"
    write_htpasswd(htp, USERS)
    with open(pol, "w") as f:
        f.write('[[allow]]\nusers = ["alice"]\nrepositories = ["alice/*"\nactions = ["pull"]\n')
    r = subprocess.run([sys.executable, "-m", "berth.registry", "serve", "--addr", "127.0.0.1:0", "--root",
                        str(root), "--auth", f"htpasswd:{htp}", "--auth-policy", pol],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "policy.toml" in r.stderr and "line 4" in r.stderr, r.stderr
    with open(pol, "w") as f:
        f.write('[[allow]]\nusers = ["alice"]\nrepositories = ["alice/*"]\nactions = ["pull", "fly"]\n')
    r = subprocess.run([sys.executable, "-m", "berth.registry", "serve", "--addr", "127.0.0.1:0", "--root",
                        str(root), "--auth", f"htpasswd:{htp}", "--auth-policy", pol],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "rule 1" in r.stderr and "fly" in r.stderr, r.stderr
    assert not root.exists() or os.listdir(root) == []
