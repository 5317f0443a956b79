"""HostConfig resources and security options, observed from inside the container."""

from __future__ import annotations

import docker
import pytest

from tests.conftest import Daemon


def test_memory_limit_and_oom_kill(daemon: Daemon) -> None:
    out = daemon.cli("run", "--rm", "--memory", "32m", "busybox", "cat",
                     "/sys/fs/cgroup/memory/memory.limit_in_bytes").stdout
    assert out == b"33554432\n"
    r = daemon.cli("run", "--name", "oomer", "--memory", "32m", "busybox", "sh", "-c",
                   "x=a; while true; do x=$x$x$x$x; done", check=False)
    assert r.returncode == 137
    st = daemon.client().api.inspect_container("oomer")["State"]
    assert st["OOMKilled"] is True and st["ExitCode"] == 137
    daemon.cli("rm", "oomer")


def test_pids_cpus_readonly_caps_user(daemon: Daemon) -> None:
    r = daemon.cli("run", "--rm", "--pids-limit", "5", "busybox", "sh", "-c",
                   "for i in 1 2 3 4 5 6 7 8; do sleep 2 & done; wait", check=False)
    assert b"can't fork" in r.stderr
    assert daemon.cli("run", "--rm", "--cpus", "0.5", "busybox", "cat",
                      "/sys/fs/cgroup/cpu/cpu.cfs_quota_us").stdout == b"50000\n"
    r = daemon.cli("run", "--rm", "--read-only", "busybox", "touch", "/x", check=False)
    assert r.returncode != 0 and b"Read-only file system" in r.stderr
    assert daemon.cli("run", "--rm", "--read-only", "--tmpfs", "/scratch", "busybox", "touch",
                      "/scratch/x").returncode == 0
    out = daemon.cli("run", "--rm", "--cap-drop", "ALL", "busybox", "grep", "CapEff", "/proc/self/status").stdout
    assert out.split()[1] == b"0000000000000000"
    out = daemon.cli("run", "--rm", "--cap-drop", "ALL", "--cap-add", "NET_ADMIN", "busybox", "grep", "CapEff",
                     "/proc/self/status").stdout
    assert int(out.split()[1], 16) == 1 << 12
    r = daemon.cli("run", "--rm", "--cap-drop", "ALL", "busybox", "chown", "1:1", "/tmp", check=False)
    assert r.returncode != 0
    assert daemon.cli("run", "--rm", "--user", "65534", "busybox", "id", "-u").stdout == b"65534\n"
    assert daemon.cli("run", "--rm", "--user", "nobody:daemon", "--group-add", "tty", "busybox", "id").stdout == \
        b"uid=65534(nobody) gid=1(daemon) groups=5(tty)\n"


def test_init_seccomp_nnp_ulimits_sysctls(daemon: Daemon) -> None:
    out = daemon.cli("run", "--rm", "--init", "busybox", "ps", "-o", "pid,args").stdout.decode().splitlines()
    assert out[1].split(None, 1) == ["1", "/sbin/docker-init -- ps -o pid,args"]
    assert daemon.cli("run", "--rm", "busybox", "grep", "Seccomp:", "/proc/self/status").stdout.split()[1] == b"2"
    assert daemon.cli("run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "grep", "Seccomp:",
                      "/proc/self/status").stdout.split()[1] == b"0"
    assert daemon.cli("run", "--rm", "--security-opt", "no-new-privileges", "busybox", "grep", "NoNewPrivs",
                      "/proc/self/status").stdout.split()[1] == b"1"
    assert daemon.cli("run", "--rm", "--ulimit", "nofile=100:200", "busybox", "sh", "-c",
                      "ulimit -n; ulimit -Hn").stdout == b"100\n200\n"
    assert daemon.cli("run", "--rm", "--sysctl", "kernel.shmmax=1000000", "busybox", "cat",
                      "/proc/sys/kernel/shmmax").stdout == b"1000000\n"


def test_seccomp_profile_blocks_syscalls(daemon: Daemon) -> None:
    # the default profile refuses swapon (EPERM) even though the process is root
    r = daemon.cli("run", "--rm", "busybox", "swapon", "/dev/null", check=False)
    assert r.returncode != 0


@pytest.mark.parametrize(("hc", "field"), [
    ({"Memory": 1024}, "Memory"),
    ({"MemorySwap": 10 << 20, "Memory": 20 << 20}, "MemorySwap"),
    ({"NanoCpus": 99 * 10**9}, "NanoCpus"),
    ({"CpuPeriod": 10}, "CpuPeriod"),
    ({"CpuQuota": 10}, "CpuQuota"),
    ({"CpusetCpus": "0-99"}, "CPUs are not available"),
    ({"Ulimits": [{"Name": "bogus", "Soft": 1, "Hard": 1}]}, "Ulimits"),
    ({"CapAdd": ["NOT_A_CAP"]}, "unknown capability"),
    ({"SecurityOpt": ["wat=1"]}, "invalid --security-opt 2"),
    ({"Sysctls": {"kernel.hostname": "x"}}, "Sysctls"),
    ({"PidsLimit": "many"}, "PidsLimit"),
    ({"Devices": [{"PathOnHost": "/dev/nonexistent"}]}, "Devices"),
])
def test_invalid_host_config_names_the_field(client: docker.DockerClient, hc: dict, field: str) -> None:
    before = client.api.containers(all=True)
    with pytest.raises(docker.errors.APIError) as e:
        client.api.create_container("busybox", ["true"], host_config=hc)
    assert e.value.status_code == 400
    assert field in str(e.value.explanation)
    assert client.api.containers(all=True) == before


def test_privileged_and_devices(daemon: Daemon) -> None:
    out = daemon.cli("run", "--rm", "--privileged", "busybox", "sh", "-c",
                     "grep CapEff /proc/self/status; mount | grep ' /sys ' ; grep Seccomp: /proc/self/status").stdout
    lines = out.decode().splitlines()
    assert int(lines[0].split()[1], 16) > 0xA80425FB  # more than Docker's default 14
    assert "(rw," in lines[1]  # /sys is writable
    assert lines[2].split()[1] == "0"  # no seccomp filter
    out = daemon.cli("run", "--rm", "--device", "/dev/null:/dev/mynull", "busybox", "sh", "-c",
                     "ls -l /dev/mynull; echo x > /dev/mynull && echo wrote").stdout.decode()
    assert out.startswith("crw") and "1,   3" in out and out.endswith("wrote\n")
