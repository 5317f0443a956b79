"""The default seccomp profile (Docker's rules, shipped in the berth package), its capability-
conditional rules, custom and unconfined profiles, a missing profile, and the other security
options, all driven through the docker CLI / SDK against a real berthd."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import struct
from collections.abc import Iterator

import docker
import pytest

from tests.conftest import Daemon, _daemon_fixture

EPERM, ENOSYS = 1, 38
CLONE_NEWUSER, SIGCHLD = 0x10000000, 17
# exit(rax >= 0 ? 0 : -rax): the program's exit code is the errno of its one syscall, or 0
_EXIT_WITH_ERRNO = bytes.fromhex("4885C0" "7804" "31FF" "EB04" "F7D8" "89C7" "B8E7000000" "0F05")


def _elf(code: bytes) -> bytes:
    """A static x86-64 Linux executable: one loadable segment holding ``code``."""
    base, size = 0x400000, 64 + 56 + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header = struct.pack("<16sHHIQQQIHHHHHH", ident, 2, 0x3E, 1, base + 120, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    segment = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return header + segment + code


def _clone_program(flags: int) -> bytes:
    """clone(flags, NULL, NULL, NULL, 0), the raw syscall (no libc)."""
    return _elf(b"\xBF" + struct.pack("<I", flags) + bytes.fromhex("31F6" "31D2" "4531D2" "4531C0" "B838000000"
                                                                   "0F05") + _EXIT_WITH_ERRNO)


def _clone3_program(flags: int) -> bytes:
    """clone3() with a zeroed 88-byte clone_args holding ``flags`` and exit_signal SIGCHLD."""
    return _elf(bytes.fromhex("4883EC58" "4889E7" "31C0" "B958000000" "F3AA" "4889E7") + b"\xC7\x04\x24"
                + struct.pack("<I", flags) + bytes.fromhex("C744242011000000" "BE58000000" "B8B3010000" "0F05")
                + _EXIT_WITH_ERRNO)


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> str:
    if platform.machine() != "x86_64":
        pytest.skip("the raw clone programs are x86-64 machine code")
    d = tmp_path_factory.mktemp("seccomp-programs")
    for name, data in (("clone-newuser", _clone_program(CLONE_NEWUSER | SIGCHLD)),
                       ("clone3-newuser", _clone3_program(CLONE_NEWUSER))):
        p = d / name
        p.write_bytes(data)
        p.chmod(0o755)
    return str(d)


def _run(d: Daemon, *args: str) -> tuple[int, str]:
    r = d.cli("run", "--rm", *args, check=False)
    return r.returncode, (r.stdout + r.stderr).decode()


# -- the default profile ---------------------------------------------------------------------------------------

def test_info_reports_the_builtin_profile(daemon: Daemon) -> None:
    assert "name=seccomp,profile=builtin" in daemon.client().info()["SecurityOptions"]
    out = daemon.cli("info", "--format", "{{json .SecurityOptions}}").stdout
    assert "name=seccomp,profile=builtin" in json.loads(out)


def test_unshare_needs_cap_sys_admin(daemon: Daemon) -> None:
    rc, out = _run(daemon, "busybox", "unshare", "-U", "-n", "true")
    assert rc != 0 and "Operation not permitted" in out, out
    rc, out = _run(daemon, "--cap-add", "SYS_ADMIN", "busybox", "unshare", "-U", "-n", "true")
    assert rc == 0, out
    # a mount namespace: the same refusal, the same way out
    rc, out = _run(daemon, "busybox", "unshare", "-m", "true")
    assert rc != 0 and "Operation not permitted" in out, out
    rc, out = _run(daemon, "--cap-add", "SYS_ADMIN", "busybox", "unshare", "-m", "true")
    assert rc == 0, out


def test_unconfined_allows_a_user_namespace(daemon: Daemon) -> None:
    """Without the filter the kernel lets an unprivileged process make a user namespace: it is
    the profile, not the missing capability, that refused it above."""
    rc, out = _run(daemon, "--security-opt", "seccomp=unconfined", "busybox", "unshare", "-U", "-n", "true")
    assert rc == 0, out
    rc, out = _run(daemon, "--security-opt", "seccomp=unconfined", "busybox", "grep", "Seccomp:", "/proc/self/status")
    assert out.split() == ["Seccomp:", "0"]


def test_setns_needs_cap_sys_admin(daemon: Daemon) -> None:
    rc, out = _run(daemon, "busybox", "sh", "-c", "nsenter -t 1 -n true")
    assert rc != 0 and "Operation not permitted" in out, out
    rc, out = _run(daemon, "--cap-add", "SYS_ADMIN", "busybox", "sh", "-c", "nsenter -t 1 -n true && echo in")
    assert rc == 0 and out == "in\n", out


def test_raw_clone_with_namespace_flags(daemon: Daemon, programs: str) -> None:
    """clone(CLONE_NEWUSER) is EPERM and clone3 is ENOSYS (so libcs fall back to clone, which the
    filter can inspect), unless the container holds CAP_SYS_ADMIN or runs unconfined."""
    vol = ["-v", f"{programs}:/p:ro"]
    assert _run(daemon, *vol, "busybox", "/p/clone-newuser")[0] == EPERM
    assert _run(daemon, *vol, "busybox", "/p/clone3-newuser")[0] == ENOSYS
    assert _run(daemon, *vol, "--cap-add", "SYS_ADMIN", "busybox", "/p/clone-newuser")[0] == 0
    assert _run(daemon, *vol, "--cap-add", "SYS_ADMIN", "busybox", "/p/clone3-newuser")[0] == 0
    assert _run(daemon, *vol, "--security-opt", "seccomp=unconfined", "busybox", "/p/clone-newuser")[0] == 0
    assert _run(daemon, *vol, "--security-opt", "seccomp=unconfined", "busybox", "/p/clone3-newuser")[0] == 0
    # dropping every capability keeps the refusal; plain fork-like clone still works (sh runs it)
    assert _run(daemon, *vol, "--cap-drop", "ALL", "busybox", "/p/clone-newuser")[0] == EPERM
    assert _run(daemon, "busybox", "sh", "-c", "(true) && echo forked") == (0, "forked\n")


def test_other_capability_conditional_rules(daemon: Daemon) -> None:
    # chroot is allowed only with CAP_SYS_CHROOT, which Docker's default set holds
    assert _run(daemon, "busybox", "chroot", "/", "true")[0] == 0
    rc, out = _run(daemon, "--cap-drop", "SYS_CHROOT", "busybox", "chroot", "/", "true")
    assert rc != 0 and "Operation not permitted" in out, out
    # settimeofday needs CAP_SYS_TIME: refused by the filter before the capability check
    rc, out = _run(daemon, "busybox", "date", "-s", "2001-01-01")
    assert "can't set date: Operation not permitted" in out, out  # busybox's date exits 0 regardless


def test_builtin_names_the_default(daemon: Daemon) -> None:
    rc, out = _run(daemon, "--security-opt", "seccomp=builtin", "busybox", "unshare", "-U", "-n", "true")
    assert rc != 0 and "Operation not permitted" in out, out


def test_privileged_runs_without_a_filter(daemon: Daemon) -> None:
    rc, out = _run(daemon, "--privileged", "busybox", "sh", "-c", "grep Seccomp: /proc/self/status; unshare -U -n true")
    assert rc == 0 and out.split() == ["Seccomp:", "0"], out


def test_precompiled_filter_per_capability_variant(daemon: Daemon) -> None:
    """Containers with the same effective rules share one precompiled BPF program; a capability
    that changes the rules gives another; one that the rules do not mention does not."""
    c = daemon.client()

    def bpf(*extra: str) -> str:
        cid = daemon.cli("run", "-d", *extra, "busybox", "sleep", "30").stdout.decode().strip()
        try:
            with open(os.path.join(daemon.exec_root, "c", cid, "config.json")) as f:
                spec = json.load(f)
            assert spec["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
            return spec["annotations"]["run.oci.seccomp_bpf_data"]
        finally:
            c.api.remove_container(cid, force=True)

    first = bpf()
    assert bpf() == first
    assert bpf("--cap-add", "NET_ADMIN") == first  # the profile has no rule conditional on it
    assert bpf("--cap-add", "SYS_ADMIN") != first
    assert bpf("--cap-drop", "SYS_CHROOT") not in (first, bpf("--cap-add", "SYS_ADMIN"))


# -- custom profiles ---------------------------------------------------------------------------------------------

def test_custom_profile_from_a_file(daemon: Daemon, tmp_path: pathlib.Path) -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                            {"names": ["unshare"], "action": "SCMP_ACT_ERRNO",
                             "excludes": {"caps": ["CAP_SYS_ADMIN"]}}]}
    path = str(tmp_path / "profile.json")
    with open(path, "w") as f:
        json.dump(profile, f)
    rc, out = _run(daemon, "--security-opt", f"seccomp={path}", "busybox", "mkdir", "/tmp/x")
    assert rc != 0 and "Permission denied" in out, out
    # the custom profile replaces the default: what it does not name is allowed ...
    assert _run(daemon, "--security-opt", f"seccomp={path}", "busybox", "sh", "-c", "echo ok")[1] == "ok\n"
    # ... and its own conditional rule follows the container's capabilities
    rc, out = _run(daemon, "--security-opt", f"seccomp={path}", "busybox", "unshare", "-U", "true")
    assert rc != 0 and "Operation not permitted" in out, out
    rc, out = _run(daemon, "--security-opt", f"seccomp={path}", "--cap-add", "SYS_ADMIN", "busybox",
                   "unshare", "-U", "true")
    assert rc == 0, out


@pytest.mark.parametrize(("opt", "message"), [
    ("seccomp={not json", "Decoding seccomp profile failed"),
    ('seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ALLOW"}]}',
     "'name' and 'names' were specified in the seccomp profile, use either 'name' or 'names'"),
])
def test_bad_custom_profile_is_400(client: docker.DockerClient, opt: str, message: str) -> None:
    before = client.api.containers(all=True)
    with pytest.raises(docker.errors.APIError) as e:
        client.api.create_container("busybox", ["true"], host_config={"SecurityOpt": [opt]})
    assert e.value.status_code == 400 and message in str(e.value.explanation)
    assert client.api.containers(all=True) == before


# -- other security options ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("opt", "message"), [
    ("wat=1", 'invalid --security-opt 2: "wat=1"'),
    ("wat", 'invalid --security-opt 1: "wat"'),
    ("writable-cgroups=true", 'invalid --security-opt 2: "writable-cgroups=true"'),
    ("no-new-privileges=maybe", 'invalid --security-opt 2: "no-new-privileges=maybe"'),
    ("no-new-privileges=", 'invalid --security-opt 2: "no-new-privileges="'),
])
def test_bad_security_opt_is_400_with_dockers_words(client: docker.DockerClient, opt: str, message: str) -> None:
    before = client.api.containers(all=True)
    with pytest.raises(docker.errors.APIError) as e:
        client.api.create_container("busybox", ["true"], host_config={"SecurityOpt": [opt]})
    assert e.value.status_code == 400
    assert e.value.explanation == message
    assert client.api.containers(all=True) == before


def test_no_new_privileges_takes_go_booleans(daemon: Daemon) -> None:
    for opt, want in (("no-new-privileges=1", "1"), ("no-new-privileges=False", "0"), ("no-new-privileges:true", "1")):
        rc, out = _run(daemon, "--security-opt", opt, "busybox", "grep", "NoNewPrivs", "/proc/self/status")
        assert rc == 0 and out.split() == ["NoNewPrivs:", want], (opt, out)


@pytest.mark.parametrize(("opts", "warning"), [
    (["apparmor=docker-default"], 'AppArmor profile "docker-default" is not applied'),
    (["label=user:system_u", "label=level:s0:c1"],
     'SELinux label options "user:system_u", "level:s0:c1" are not applied'),
    (["apparmor=unconfined"], None),
    (["label=disable"], None),
    (["label:disable"], None),
])
def test_apparmor_and_label_without_an_lsm(client: docker.DockerClient, opts: list[str], warning: str | None) -> None:
    """No AppArmor or SELinux here: dockerd accepts these and applies nothing; so does Berth, and
    it says so in the create warnings rather than pretending."""
    r = client.api.create_container("busybox", ["true"], host_config={"SecurityOpt": opts})
    try:
        warnings = r["Warnings"] or []
        if warning is None:
            assert warnings == []
        else:
            assert len(warnings) == 1 and warnings[0].startswith(warning), warnings
        info = client.api.inspect_container(r["Id"])
        assert info["AppArmorProfile"] == "" and info["ProcessLabel"] == "" and info["MountLabel"] == ""
        assert info["HostConfig"]["SecurityOpt"] == opts
        client.api.start(r["Id"])
        assert client.api.wait(r["Id"])["StatusCode"] == 0
    finally:
        client.api.remove_container(r["Id"], force=True)


def test_cli_prints_the_apparmor_warning(daemon: Daemon) -> None:
    r = daemon.cli("run", "--rm", "--security-opt", "apparmor=foo", "busybox", "echo", "ran")
    assert r.stdout == b"ran\n"
    assert b'AppArmor profile "foo" is not applied' in r.stderr, r.stderr


# -- no usable default profile -------------------------------------------------------------------------------------

@pytest.fixture(params=["missing", "broken"])
def profileless_daemon(request: pytest.FixtureRequest, busybox_tar: str, tmp_path: pathlib.Path,
                       monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    path = str(tmp_path / "seccomp.json")
    if request.param == "broken":
        with open(path, "w") as f:
            f.write('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [')
    monkeypatch.setenv("BERTH_SECCOMP_PROFILE", path)  # berthd inherits it
    yield from _daemon_fixture("overlay", busybox_tar)


def test_refuses_containers_without_a_profile(profileless_daemon: Daemon) -> None:
    d = profileless_daemon
    r = d.cli("run", "--name", "nofilter", "busybox", "true", check=False)
    assert r.returncode != 0
    err = r.stderr.decode()
    assert "default seccomp profile cannot be loaded" in err and "seccomp=unconfined" in err, err
    assert d.client().api.inspect_container("nofilter")["State"]["Status"] == "created"  # it never ran
    rc, out = _run(d, "--security-opt", "seccomp=unconfined", "busybox", "echo", "unconfined")
    assert rc == 0 and out == "unconfined\n", out
    rc, out = _run(d, "--privileged", "busybox", "echo", "privileged")
    assert rc == 0 and out == "privileged\n", out
    info = d.client().info()
    assert not any(o.startswith("name=seccomp") for o in info["SecurityOptions"])
    assert any("default seccomp profile cannot be loaded" in w for w in info["Warnings"])
