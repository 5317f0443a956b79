"""The CLI against berthd over TCP with TLS client certificates (made here by the openssl CLI),
and pull/push/login against Berth's own registry on loopback."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests.cli_helpers import berth, berth_env, ok
from tests.conftest import Daemon, _daemon_fixture, cleanup_daemon, new_daemon  # noqa: F401

OPENSSL = shutil.which("openssl")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], check=True, capture_output=True)


def make_certs(d: str) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/ca-key.pem", "-out", f"{d}/ca.pem",
             "-days", "2", "-subj", "/CN=berth-test-ca")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        with open(f"{d}/{name}.ext", "w") as f:
            f.write(ext + "\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/{name}-key.pem", "-out",
                 f"{d}/{name}.csr", "-subj", f"/CN={name}")
        _openssl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca-key.pem",
                 "-CAcreateserial", "-out", f"{d}/{name}.pem", "-days", "2", "-extfile", f"{d}/{name}.ext")


@pytest.fixture(scope="module")
def tls_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str, str]]:
    if OPENSSL is None:
        pytest.skip("the openssl CLI is not installed")
    certs = str(tmp_path_factory.mktemp("certs"))
    make_certs(certs)
    port = _port()
    tcp = f"tcp://127.0.0.1:{port}"
    d = new_daemon(extra=["-H", tcp, "--tlsverify", "--tlscacert", f"{certs}/ca.pem", "--tlscert",
                          f"{certs}/server.pem", "--tlskey", f"{certs}/server-key.pem"])
    try:
        d.start()
        yield d, tcp, certs
    finally:
        cleanup_daemon(d)


def test_tlsverify_with_flags_and_with_env(tls_daemon: tuple[Daemon, str, str]) -> None:
    d, tcp, certs = tls_daemon
    flags = ["--tlsverify", "--tlscacert", f"{certs}/ca.pem", "--tlscert", f"{certs}/client.pem",
             "--tlskey", f"{certs}/client-key.pem"]
    out = ok(berth(tcp, "-H", tcp, *flags, "version"))
    assert "Server: Berth" in out
    assert ok(berth(tcp, "-H", tcp, *flags, "ps", "-a", "-q")) == ""
    # Docker's environment: DOCKER_CERT_PATH holds ca.pem, cert.pem, key.pem
    envdir = os.path.join(certs, "env")
    os.makedirs(envdir, exist_ok=True)
    for src, dst in (("ca.pem", "ca.pem"), ("client.pem", "cert.pem"), ("client-key.pem", "key.pem")):
        shutil.copy(os.path.join(certs, src), os.path.join(envdir, dst))
    env = berth_env("", DOCKER_HOST=tcp, DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=envdir)
    del env["BERTH_HOST"]
    assert ok(berth("", "images", "-q", env=env)) == ""
    assert "Server: Berth" in ok(berth("", "version", env=env))


def test_tls_failures_are_one_line(tls_daemon: tuple[Daemon, str, str]) -> None:
    d, tcp, certs = tls_daemon
    # no client certificate: the daemon refuses the handshake
    r = berth(tcp, "-H", tcp, "--tlsverify", "--tlscacert", f"{certs}/ca.pem", "ps")
    assert r.returncode == 1 and r.stderr.count(b"\n") <= 2, r.stderr
    # a CA that did not sign the server: the client refuses
    other = os.path.join(certs, "other")
    os.makedirs(other, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{other}/k.pem", "-out", f"{other}/ca.pem",
             "-days", "1", "-subj", "/CN=other")
    r = berth(tcp, "-H", tcp, "--tlsverify", "--tlscacert", f"{other}/ca.pem", "--tlscert", f"{certs}/client.pem",
              "--tlskey", f"{certs}/client-key.pem", "ps")
    assert r.returncode == 1 and b"certificate verify failed" in r.stderr.lower().replace(b"_", b" ")
    # plain HTTP to a TLS port
    r = berth(tcp, "-H", tcp, "ps")
    assert r.returncode == 1


@pytest.fixture
def registry() -> Iterator[str]:
    from tests.test_registry_e2e import Reg

    r = Reg("htpasswd")
    try:
        yield r.addr
    finally:
        r.close()


def test_login_push_pull_logout(daemon: Daemon, registry: str, tmp_path: object) -> None:
    config = os.path.join(str(tmp_path), "docker-config")
    env = berth_env(daemon.host, DOCKER_CONFIG=config)
    ref = f"{registry}/cli/pushed:1"
    ok(berth(daemon.host, "tag", "busybox", ref, env=env))
    try:
        r = berth(daemon.host, "push", ref, env=env)
        assert r.returncode == 1 and r.stderr  # no credentials yet
        r = berth(daemon.host, "login", "-u", "alice", "--password-stdin", registry, input=b"wrong\n", env=env)
        assert r.returncode == 1 and not os.path.exists(os.path.join(config, "config.json"))
        out = ok(berth(daemon.host, "login", "-u", "alice", "--password-stdin", registry, input=b"s3cret\n",
                       env=env))
        assert "Login Succeeded" in out
        with open(os.path.join(config, "config.json")) as f:
            auths = json.load(f)["auths"]
        assert base64.b64decode(auths[registry]["auth"]) == b"alice:s3cret"
        assert os.stat(os.path.join(config, "config.json")).st_mode & 0o077 == 0
        out = ok(berth(daemon.host, "push", ref, env=env))
        assert f"The push refers to repository [{registry}/cli/pushed]" in out
        assert any(line.endswith(": Pushed") for line in out.splitlines()), out
        last = out.strip().splitlines()[-1]
        assert last.startswith("1: digest: sha256:") and " size: " in last
        ok(berth(daemon.host, "rmi", ref, env=env))
        out = ok(berth(daemon.host, "pull", ref, env=env))
        lines = out.strip().splitlines()
        assert lines[-1] == ref
        assert any(line.startswith("Digest: sha256:") for line in lines)
        assert "\x1b[" not in out  # not a terminal: plain lines
        assert ok(berth(daemon.host, "pull", "-q", ref, env=env)).strip() == ref
        out = ok(berth(daemon.host, "logout", registry, env=env))
        assert f"Removing login credentials for {registry}" in out
        with open(os.path.join(config, "config.json")) as f:
            assert registry not in json.load(f).get("auths", {})
        r = berth(daemon.host, "pull", f"{registry}/cli/nothere:1", env=env)
        assert r.returncode == 1 and r.stderr
    finally:
        berth(daemon.host, "rmi", "-f", ref, env=env)


def test_credential_helper_is_used(daemon: Daemon, registry: str, tmp_path: object) -> None:
    """credsStore: the helper program stores on login and answers on push (Docker's protocol)."""
    base = str(tmp_path)
    config = os.path.join(base, "cfg")
    os.makedirs(config)
    store = os.path.join(base, "store.json")
    bindir = os.path.join(base, "bin")
    os.makedirs(bindir)
    helper = os.path.join(bindir, "docker-credential-berthtest")
    with open(helper, "w") as f:
        f.write(f"""#!/bin/sh
set -e
case "$1" in
  store) cat > {store} ;;
  get) read server || true; [ -f {store} ] && cat {store} || {{ echo "credentials not found"; exit 1; }} ;;
  erase) rm -f {store} ;;
esac
""")
    os.chmod(helper, 0o755)
    with open(os.path.join(config, "config.json"), "w") as f:
        json.dump({"credsStore": "berthtest"}, f)
    env = berth_env(daemon.host, DOCKER_CONFIG=config, PATH=bindir + ":" + os.environ["PATH"])
    ok(berth(daemon.host, "login", "-u", "alice", "--password-stdin", registry, input=b"s3cret", env=env))
    with open(store) as f:
        assert json.load(f) == {"ServerURL": registry, "Username": "alice", "Secret": "s3cret"}
    with open(os.path.join(config, "config.json")) as f:
        assert "auths" not in json.load(f)  # the secret lives in the helper only
    ref = f"{registry}/cli/helped:1"
    ok(berth(daemon.host, "tag", "busybox", ref, env=env))
    try:
        ok(berth(daemon.host, "push", ref, env=env))
        ok(berth(daemon.host, "logout", registry, env=env))
        assert not os.path.exists(store)
    finally:
        berth(daemon.host, "rmi", "-f", ref, env=env)
