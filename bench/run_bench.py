#!/usr/bin/env python3
"""Berth benchmark: container lifecycle latency through berthd, against the bare OCI runtime floor
and, when present on the machine, dockerd and podman.

Starts a private berthd (fresh data root under /var/tmp), loads a busybox image built from the host's
busybox, times the docker CLI against it, and prints a table of median/p90 figures and ratios.
Needs root. See bench/README.md.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import docker

try:
    from bench import api_lifecycle, monitor_pairs
except ImportError:  # run as a script: bench/ is on sys.path
    import api_lifecycle  # type: ignore[no-redef]
    import monitor_pairs  # type: ignore[no-redef]

WARMUP = 2
BERTH_IMAGE = "busybox"
# Shared engines (dockerd, podman) get the same image under a tag of our own, so that a busybox:latest
# the user already has there is never overwritten; it is removed again at the end.
SHARED_IMAGE = "berth-bench/busybox:latest"
DOCKERD_SOCK = "unix:///var/run/docker.sock"
FLOOR_NAMESPACES = {"pid", "network", "ipc", "uts", "mount"}
CONCURRENT = 20
PS_CONTAINERS = 100
PS_RUNS = 5


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- figures


@dataclass
class Figure:
    name: str
    samples_ms: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p90(self) -> float:
        s = sorted(self.samples_ms)  # nearest-rank percentile
        return s[max(0, math.ceil(0.9 * len(s)) - 1)]

    def to_json(self) -> dict[str, Any]:
        return {"median_ms": round(self.median, 3), "p90_ms": round(self.p90, 3),
                "samples_ms": [round(x, 3) for x in self.samples_ms]}


@dataclass
class Results:
    runs: int
    quick: bool
    figures: dict[str, Figure] = field(default_factory=dict)
    singles: dict[str, float] = field(default_factory=dict)  # one-shot wall times, ms
    notes: list[str] = field(default_factory=list)  # skipped sections
    errors: list[str] = field(default_factory=list)
    berthd_rss_mb: float | None = None
    env: dict[str, str] = field(default_factory=dict)

    def add(self, fig: Figure) -> None:
        self.figures[fig.name] = fig
        print(f"  {fig.name:<34} median {fig.median:9.1f} ms   p90 {fig.p90:9.1f} ms", flush=True)

    def note(self, msg: str) -> None:
        self.notes.append(msg)
        print(f"  {msg}", flush=True)

    def error(self, what: str, e: BaseException) -> None:
        msg = f"{what}: {e}"
        self.errors.append(msg)
        print(f"  FAILED {msg}", flush=True)

    def ratio(self, a: str, b: str) -> float | None:
        if a in self.figures and b in self.figures and self.figures[b].median > 0:
            return self.figures[a].median / self.figures[b].median
        return None


def run_cmd(cmd: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None,
            input_: bytes | None = None, timeout: float = 120) -> str:
    p = subprocess.run(list(cmd), env=env, cwd=cwd, input=input_, capture_output=True, timeout=timeout)
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip() or p.stdout.decode(errors="replace").strip()
        raise BenchError(f"`{' '.join(cmd)}` exited {p.returncode}: {err[-800:]}")
    return p.stdout.decode(errors="replace").strip()


def timed(cmd: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = run_cmd(cmd, env)
    return (time.perf_counter() - t0) * 1000, out


def series(n: int, once: Callable[[int], float]) -> list[float]:
    """WARMUP unrecorded calls, then n recorded ones; once(i) returns a duration in ms."""
    for i in range(WARMUP):
        once(-1 - i)
    return [once(i) for i in range(n)]


# ---------------------------------------------------------------- environment / cleanup


def mounts_under(root: str) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 5:
                continue
            mp = fields[4].encode().decode("unicode_escape")  # octal escapes such as \040
            if mp == root or mp.startswith(root + "/"):
                out.append(mp)
    return sorted(set(out), key=lambda p: (p.count("/"), len(p)), reverse=True)


def unmount_all(root: str) -> None:
    for _ in range(3):
        mps = mounts_under(root)
        if not mps:
            return
        for mp in mps:
            subprocess.run(["umount", "-l", mp], capture_output=True)
    left = mounts_under(root)
    if left:
        print(f"warning: still mounted under {root}: {left}", file=sys.stderr)


def tool_version(cmd: Sequence[str]) -> str:
    try:
        return run_cmd(cmd, timeout=20).splitlines()[0]
    except (BenchError, OSError, subprocess.TimeoutExpired, IndexError):
        return "?"


class Berthd:
    """A private berthd in a fresh root under /var/tmp."""

    def __init__(self, root: str, monitor: str = "auto", extra: Sequence[str] = ()) -> None:
        self.root = root
        self.monitor = monitor
        # a bench daemon's own default bridge and iptables chains, taken away again in stop()
        tag = "bn" + os.urandom(3).hex()
        self.extra = ["--bridge", "b" + tag, "--network-tag", tag, *extra]
        self.sock = os.path.join(root, "berthd.sock")
        self.host = "unix://" + self.sock
        self.log_path = os.path.join(root, "berthd.log")
        # Kept short: conmon's attach socket is <exec-root>/c/<64-hex id>/attach, and a unix socket path
        # has at most 107 bytes (berthd's default, /var/run/berth, is short too).
        self.exec_root = os.path.join(root, "x")
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: docker.DockerClient | None = None

    def start(self, timeout: float = 60) -> None:
        cmd = [sys.executable, "-m", "berth.daemon.main", "-H", self.host,
               "--data-root", os.path.join(self.root, "data"), "--exec-root", self.exec_root,
               "--storage-driver", "overlay", "--default-runtime", "crun", "--monitor", self.monitor, *self.extra]
        self.cmd = cmd
        with open(self.log_path, "wb") as log:
            # own session: a Ctrl-C on the terminal reaches only us, and we stop the daemon in order
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"berthd exited with {self.proc.returncode} during start-up:\n{self.log_tail()}")
            client: docker.DockerClient | None = None
            try:  # the client asks the daemon for its API version on construction
                client = docker.DockerClient(base_url=self.host, timeout=120)
                if client.ping():
                    break
            except Exception:  # not listening yet
                if client is not None:
                    client.close()
            if time.monotonic() > deadline:
                raise BenchError(f"berthd did not answer within {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.05)
        self.client = client

    def log_tail(self, n: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def rss_mb(self) -> float | None:
        if self.proc is None:
            return None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return None

    def stop(self) -> None:
        if self.client is not None:
            try:
                for c in self.client.api.containers(all=True, quiet=True):
                    try:
                        self.client.api.remove_container(c["Id"], force=True)
                    except Exception as e:
                        print(f"warning: removing container {c['Id'][:12]}: {e}", file=sys.stderr)
            except Exception as e:
                print(f"warning: listing berthd containers: {e}", file=sys.stderr)
            self.client.close()
            self.client = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                print("warning: berthd ignored SIGTERM for 30s; killing it", file=sys.stderr)
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:  # bridges, veths and rules outlive berthd by design
            subprocess.run([*self.cmd, "--network-cleanup"], capture_output=True, timeout=60)


# ---------------------------------------------------------------- measurements


class Engine:
    """A docker-compatible CLI (docker against berthd or dockerd, or podman) and the containers it made."""

    def __init__(self, label: str, argv0: list[str], env: dict[str, str], image: str) -> None:
        self.label = label
        self.argv0 = argv0
        self.env = env
        self.image = image
        self.made: set[str] = set()
        self.loaded_image = False

    def cmd(self, *args: str) -> list[str]:
        return [*self.argv0, *args]

    def check_output(self, res: Results) -> None:
        """`run` must deliver the container's output, or the run figure would time a broken path."""
        try:
            out = run_cmd(self.cmd("run", "--rm", "--network", "none", self.image, "echo", "berth-bench-ok"),
                          self.env)
        except (BenchError, subprocess.TimeoutExpired) as e:
            res.error(f"{self.label} run output check", e)
            return
        if out != "berth-bench-ok":
            res.error(f"{self.label} run output check",
                      BenchError(f"`run ... echo berth-bench-ok` printed {out!r} (attach lost the output)"))

    def cli_floor(self, res: Results, n: int) -> None:
        """The docker CLI's own cost: process start plus the version handshake and one API call."""
        name = f"{self.label} docker version"
        try:
            res.add(Figure(name, series(n, lambda _i: timed(
                self.cmd("version", "--format", "{{.Server.Version}}"), self.env)[0])))
        except (BenchError, subprocess.TimeoutExpired) as e:
            res.error(name, e)

    def run_series(self, res: Results, n: int) -> None:
        name = f"{self.label} run --rm"
        self.check_output(res)
        try:
            res.add(Figure(name, series(n, lambda _i: timed(
                self.cmd("run", "--rm", "--network", "none", self.image, "true"), self.env)[0])))
        except (BenchError, subprocess.TimeoutExpired) as e:
            res.error(name, e)

    def lifecycle_series(self, res: Results, n: int) -> None:
        create: list[float] = []
        start: list[float] = []
        rm: list[float] = []

        def once(i: int) -> float:
            t_create, cid = timed(self.cmd("create", self.image, "true"), self.env)
            cid = cid.splitlines()[-1]
            self.made.add(cid)
            t_start, _ = timed(self.cmd("start", cid), self.env)
            t_rm, _ = timed(self.cmd("rm", "-f", cid), self.env)
            self.made.discard(cid)
            if i >= 0:
                create.append(t_create)
                start.append(t_start)
                rm.append(t_rm)
            return t_create + t_start + t_rm

        try:
            series(n, once)
        except (BenchError, subprocess.TimeoutExpired) as e:
            res.error(f"{self.label} create/start/rm", e)
            return
        res.add(Figure(f"{self.label} create", create))
        res.add(Figure(f"{self.label} start", start))
        res.add(Figure(f"{self.label} rm -f", rm))

    def concurrent(self, res: Results, count: int) -> None:
        ids: list[str] = []
        lock = threading.Lock()
        errors: list[str] = []

        def one(_: int) -> None:
            try:
                cid = run_cmd(self.cmd("run", "-d", self.image, "sleep", "60"), self.env).splitlines()[-1]
                with lock:
                    ids.append(cid)
                    self.made.add(cid)
            except (BenchError, subprocess.TimeoutExpired) as e:
                with lock:
                    errors.append(str(e))

        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=count) as pool:
            list(pool.map(one, range(count)))
        t_run = (time.perf_counter() - t0) * 1000
        if errors:
            res.error(f"{self.label} {count} x concurrent run -d", BenchError(f"{len(errors)} failed; first: "
                                                                               f"{errors[0]}"))
        else:
            res.singles[f"{self.label} {count} x run -d (concurrent)"] = t_run
            print(f"  {count} x run -d sleep 60, concurrently: {t_run:9.1f} ms total", flush=True)
        if not ids:
            return
        if self.label == "berth":
            rss = monitor_rss_mb(ids)
            if rss:
                res.singles[f"{self.label} monitor RSS per container (MB)"] = rss / len(ids)
                print(f"  monitor RSS for {len(ids)} containers:      {rss:9.1f} MB ({rss / len(ids):.2f} MB each)",
                      flush=True)
        try:
            t_rm, _ = timed(self.cmd("rm", "-f", *ids), self.env)
            self.made.difference_update(ids)
            res.singles[f"{self.label} rm -f {len(ids)} running"] = t_rm
            print(f"  rm -f of those {len(ids)}:               {t_rm:9.1f} ms total", flush=True)
        except (BenchError, subprocess.TimeoutExpired) as e:
            res.error(f"{self.label} rm -f {len(ids)} running", e)

    def cleanup(self) -> None:
        if self.made:
            subprocess.run(self.cmd("rm", "-f", *sorted(self.made)), env=self.env, capture_output=True, timeout=120)
            self.made.clear()
        if self.loaded_image:
            subprocess.run(self.cmd("rmi", self.image), env=self.env, capture_output=True, timeout=120)
            self.loaded_image = False


def monitor_rss_mb(ids: list[str]) -> float:
    """Summed VmRSS of the conmon processes monitoring ``ids`` (found by their -c argument)."""
    want = {i.encode() for i in ids}
    total_kb = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            exe = os.path.basename(argv[0]) if argv else b""
            if not (exe == b"conmon" or exe.startswith(b"berth-monitor")) or not want & set(argv):
                continue
            with open(f"/proc/{pid}/status") as f:
                total_kb += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration, ValueError):
            continue
    return total_kb / 1024


def ps_many(res: Results, berthd: Berthd, eng: Engine, count: int, runs: int) -> None:
    assert berthd.client is not None
    api = berthd.client.api
    made: list[str] = []
    try:
        t0 = time.perf_counter()
        for _ in range(count):
            made.append(api.create_container(BERTH_IMAGE, "true")["Id"])
        print(f"  created {count} containers via the API in {(time.perf_counter() - t0):.1f} s", flush=True)
        res.add(Figure(f"berth ps -a ({count} containers)",
                       series(runs, lambda _i: timed(eng.cmd("ps", "-a"), eng.env)[0])))
    except Exception as e:  # report and carry on
        res.error(f"berth ps -a with {count} containers", e)
    finally:
        for cid in made:
            try:
                api.remove_container(cid, force=True)
            except Exception as e:
                res.error(f"removing container {cid[:12]}", e)


class Floor:
    """Bare `<runtime> run` of an OCI bundle holding the same busybox rootfs."""

    def __init__(self, root: str, image_tar: bytes) -> None:
        self.bundle = os.path.join(root, "bundle")
        self.image_tar = image_tar
        self.in_flight: dict[str, str] = {}  # container id -> runtime

    def prepare(self, crun: str) -> None:
        rootfs = os.path.join(self.bundle, "rootfs")
        os.makedirs(rootfs)
        with tarfile.open(fileobj=io.BytesIO(self.image_tar)) as tf:
            manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
            member = tf.extractfile(manifest[0]["Layers"][0])
            if member is None:
                raise BenchError("layer blob missing from the image tarball")
            layer = member.read()
        run_cmd(["tar", "-xf", "-", "-C", rootfs], input_=layer)
        run_cmd([crun, "spec"], cwd=self.bundle)
        path = os.path.join(self.bundle, "config.json")
        with open(path) as f:
            spec = json.load(f)
        spec["process"]["args"] = ["true"]
        spec["process"]["terminal"] = False
        spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"] if ns["type"] in FLOOR_NAMESPACES]
        with open(path, "w") as f:
            json.dump(spec, f, indent=2)

    def once(self, runtime: str, i: int) -> float:
        cid = f"berth-bench-{os.getpid()}-{os.path.basename(runtime)}-{i + WARMUP}"
        self.in_flight[cid] = runtime
        ms, _ = timed([runtime, "run", "--bundle", self.bundle, cid])
        del self.in_flight[cid]
        return ms

    def measure(self, res: Results, runtime: str, n: int) -> None:
        def once(i: int) -> float:
            return self.once(runtime, i)

        name = f"{os.path.basename(runtime)} run (floor)"
        try:
            res.add(Figure(name, series(n, once)))
        except (BenchError, subprocess.TimeoutExpired) as e:
            res.error(name, e)

    def cleanup(self) -> None:
        for cid, runtime in self.in_flight.items():
            subprocess.run([runtime, "delete", "-f", cid], capture_output=True, timeout=60)
        self.in_flight.clear()


# ---------------------------------------------------------------- report


def report(res: Results) -> None:
    floor = "crun run (floor)"
    rows: list[tuple[str, str, str, str]] = []
    for name, fig in res.figures.items():
        ratio = ""
        if name.endswith(" run --rm") or name.endswith(" run (floor)"):
            r = res.ratio(name, floor)
            ratio = f"{r:.2f}x crun" if r is not None and name != floor else ""
        rows.append((name, f"{fig.median:.1f}", f"{fig.p90:.1f}", ratio))
    w = max([len(r[0]) for r in rows] + [len(k) for k in res.singles] + [16])
    print()
    print(f"Results ({res.runs} runs each after {WARMUP} warm-up runs; ms)")
    print(f"{'figure':<{w}}  {'median':>9}  {'p90':>9}  vs floor")
    print("-" * (w + 34))
    for name, med, p90, ratio in rows:
        print(f"{name:<{w}}  {med:>9}  {p90:>9}  {ratio}")
    if res.singles:
        print()
        for name, ms in res.singles.items():
            print(f"{name:<{w}}  {ms:9.1f}  ms, one wall time")
    if res.berthd_rss_mb is not None:
        print(f"{'berthd idle RSS':<{w}}  {res.berthd_rss_mb:9.1f}  MB")

    ratios = ratio_table(res)
    if ratios:
        print()
        print("Ratios (median / median)")
        for k, v in ratios.items():
            print(f"  {k:<44} {v:6.2f}")
    if res.notes:
        print()
        print("Skipped:")
        for n in res.notes:
            print(f"  {n}")
    if res.errors:
        print()
        print("Errors:")
        for e in res.errors:
            print(f"  {e}")


def ratio_table(res: Results) -> dict[str, float]:
    out: dict[str, float] = {}
    pairs = [("berth run --rm", "crun run (floor)", "berth run / crun floor"),
             (monitor_pairs.figure_name("berth"), monitor_pairs.FLOOR, "berth-monitor run / crun floor (paired)"),
             (monitor_pairs.figure_name("conmon"), monitor_pairs.FLOOR, "conmon run / crun floor (paired)"),
             (monitor_pairs.figure_name("berth"), monitor_pairs.figure_name("conmon"),
              "berth-monitor run / conmon run (paired)"),
             ("berth docker version", "crun run (floor)", "docker CLI alone / crun floor"),
             ("berth run --rm", "runc run (floor)", "berth run / runc floor")]
    for other in ("dockerd", "podman"):
        pairs.append((f"{other} run --rm", "crun run (floor)", f"{other} run / crun floor"))
        for op in ("run --rm", "create", "start", "rm -f", "API create", "API rm -f"):
            pairs.append((f"berth {op}", f"{other} {op}", f"berth / {other}: {op}"))
    for a, b, label in pairs:
        r = res.ratio(a, b)
        if r is not None:
            out[label] = r
    return out


def write_json(res: Results, path: str) -> None:
    data = {
        "runs": res.runs, "warmup": WARMUP, "quick": res.quick, "environment": res.env,
        "figures": {k: v.to_json() for k, v in res.figures.items()},
        "single_wall_ms": {k: round(v, 3) for k, v in res.singles.items()},
        "berthd_idle_rss_mb": None if res.berthd_rss_mb is None else round(res.berthd_rss_mb, 2),
        "ratios": {k: round(v, 4) for k, v in ratio_table(res).items()},
        "skipped": res.notes, "errors": res.errors,
    }
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    print(f"\nwrote {path}")


# ---------------------------------------------------------------- main


def loadavg() -> str:
    """The 1/5/15-minute load averages: ratios from a shared machine are read against them."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def dockerd_state(docker_cli: str) -> tuple[bool, str]:
    if not shutil.which("dockerd"):
        return False, "dockerd: not installed, skipped"
    try:
        run_cmd([docker_cli, "-H", DOCKERD_SOCK, "version"], timeout=15)
    except (BenchError, subprocess.TimeoutExpired) as e:
        return False, f"dockerd: installed but {DOCKERD_SOCK} does not answer, skipped ({str(e)[-120:]})"
    return True, ""


def bench(args: argparse.Namespace, res: Results, root: str, cleanups: list[Callable[[], None]]) -> None:
    from berth.tools import mkbusybox

    n = res.runs
    image_tar = mkbusybox.build("/bin/busybox", "busybox:latest")
    docker_cli = shutil.which("docker")
    crun = shutil.which("crun")
    runc = shutil.which("runc")
    podman = shutil.which("podman")
    res.env = {"python": platform.python_version(), "kernel": platform.release(),
               "docker_cli": tool_version([docker_cli, "--version"]) if docker_cli else "absent",
               "crun": tool_version([crun, "--version"]) if crun else "absent",
               "runc": tool_version([runc, "--version"]) if runc else "absent",
               "podman": tool_version([podman, "--version"]) if podman else "absent",
               "loadavg_start": loadavg()}
    for k, v in res.env.items():
        print(f"{k:>10}: {v}")

    print("\n== starting berthd")
    berthd = Berthd(root)
    cleanups.append(berthd.stop)  # runs last: cleanups are unwound in reverse
    t0 = time.perf_counter()
    berthd.start()
    assert berthd.client is not None and berthd.proc is not None
    print(f"  berthd pid {berthd.proc.pid} ready in {(time.perf_counter() - t0) * 1000:.0f} ms on {berthd.host}")
    for _ in berthd.client.api.load_image(image_tar):
        pass
    print("  loaded busybox:latest")

    print("\n== OCI runtime floor")
    floor = Floor(root, image_tar)
    cleanups.append(floor.cleanup)
    if crun:
        floor.prepare(crun)
        floor.measure(res, crun, n)
    else:
        res.note("crun: not installed, no floor")
    if runc and os.path.isdir(os.path.join(floor.bundle, "rootfs")):
        floor.measure(res, runc, n)
    elif not runc:
        res.note("runc: not installed, skipped")

    berth_eng: Engine | None = None
    print("\n== berthd (docker CLI)")
    if docker_cli:
        env = {**os.environ, "DOCKER_HOST": berthd.host, "DOCKER_CLI_HINTS": "false"}
        berth_eng = Engine("berth", [docker_cli], env, BERTH_IMAGE)
        cleanups.append(berth_eng.cleanup)
        berth_eng.cli_floor(res, n)
        berth_eng.run_series(res, n)
        berth_eng.lifecycle_series(res, n)
    else:
        res.note("docker CLI: not installed; berth run/create/start/rm, concurrency and ps figures skipped")

    print("\n== start path per monitor: berth-monitor and conmon, alternating with the crun floor")
    if docker_cli and crun:
        hosts: dict[str, str] = {}
        try:
            for kind in ("berth", "conmon"):
                os.makedirs(os.path.join(root, f"m-{kind}"))
                d = Berthd(os.path.join(root, f"m-{kind}"), kind)
                cleanups.append(d.stop)
                d.start()
                assert d.client is not None
                for _ in d.client.api.load_image(image_tar):
                    pass
                hosts[kind] = d.host
            for name, samples in monitor_pairs.measure(n, docker_cli, hosts,
                                                       lambda i: floor.once(crun, i)).items():
                res.add(Figure(name, samples))
        except (BenchError, OSError, subprocess.SubprocessError) as e:
            res.error("monitor pairs", e)
    else:
        res.note("monitor pairs: need the docker CLI and crun")

    shared_tar = mkbusybox.build("/bin/busybox", SHARED_IMAGE)
    shared_tar_path = os.path.join(root, "busybox-shared.tar")
    with open(shared_tar_path, "wb") as f:
        f.write(shared_tar)

    api_engines = {"berth": (berthd.sock, BERTH_IMAGE)}
    print("\n== dockerd")
    if not docker_cli:
        res.note("dockerd: docker CLI not installed, skipped")
    else:
        ok, why = dockerd_state(docker_cli)
        if not ok:
            res.note(why)
        else:
            env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
            env["DOCKER_CLI_HINTS"] = "false"
            eng = Engine("dockerd", [docker_cli, "-H", DOCKERD_SOCK], env, SHARED_IMAGE)
            cleanups.append(eng.cleanup)
            try:
                run_cmd(eng.cmd("load", "-i", shared_tar_path), env, timeout=300)
                eng.loaded_image = True
                eng.run_series(res, n)
                eng.lifecycle_series(res, n)
                api_engines["dockerd"] = (DOCKERD_SOCK[len("unix://"):], SHARED_IMAGE)
            except (BenchError, subprocess.TimeoutExpired) as e:
                res.error("dockerd load", e)

    print("\n== create and rm -f through the API alone (no CLI), alternating engines")
    try:
        for name, samples in api_lifecycle.measure(n, api_engines).items():
            res.add(Figure(name, samples))
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        res.error("API create/rm", e)

    print("\n== podman")
    if not podman:
        res.note("podman: not installed, skipped")
    else:
        eng = Engine("podman", [podman], dict(os.environ), SHARED_IMAGE)
        cleanups.append(eng.cleanup)
        try:
            run_cmd(eng.cmd("load", "-i", shared_tar_path), timeout=300)
            eng.loaded_image = True
            eng.run_series(res, n)
            eng.lifecycle_series(res, n)
        except (BenchError, subprocess.TimeoutExpired) as e:
            res.error("podman load", e)

    print("\n== berthd memory")
    time.sleep(1)
    res.berthd_rss_mb = berthd.rss_mb()
    print(f"  idle RSS: {res.berthd_rss_mb:.1f} MB" if res.berthd_rss_mb is not None else "  RSS unavailable")

    if berth_eng is not None:
        print("\n== berthd concurrency")
        berth_eng.concurrent(res, CONCURRENT)
        if args.quick:
            res.note(f"ps -a with {PS_CONTAINERS} containers: skipped (--quick)")
        else:
            ps_many(res, berthd, berth_eng, PS_CONTAINERS, PS_RUNS)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=20, help="measured runs per figure (default 20)")
    p.add_argument("--quick", action="store_true", help=f"5 runs, skip the {PS_CONTAINERS}-container ps test")
    p.add_argument("--json", metavar="PATH", help="also write the raw figures as JSON to PATH")
    p.add_argument("--berthd-log", metavar="PATH", help="keep a copy of berthd's log at PATH")
    args = p.parse_args(argv)
    runs = 5 if args.quick else args.runs
    if runs < 1:
        p.error("--runs must be at least 1")
    if os.geteuid() != 0:
        print("run_bench.py needs root (it runs berthd, crun and runc)", file=sys.stderr)
        return 2

    def on_term(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    res = Results(runs=runs, quick=args.quick)
    root = tempfile.mkdtemp(dir="/var/tmp", prefix="berth-bench-")
    cleanups: list[Callable[[], None]] = []
    status = 0
    try:
        bench(args, res, root, cleanups)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        status = 130
    except Exception as e:  # still report what was measured
        res.errors.append(f"fatal: {e}")
        print(f"\nfatal: {e}", file=sys.stderr)
        status = 1
    finally:
        for fn in reversed(cleanups):
            try:
                fn()
            except Exception as e:
                print(f"warning: cleanup: {e}", file=sys.stderr)
        if args.berthd_log:
            try:
                shutil.copyfile(os.path.join(root, "berthd.log"), args.berthd_log)
            except OSError as e:
                print(f"warning: copying berthd's log: {e}", file=sys.stderr)
        unmount_all(root)
        shutil.rmtree(root, ignore_errors=True)
    res.env["loadavg_end"] = loadavg()
    print(f"\nload average: {res.env.get('loadavg_start', '?')} at the start, {res.env['loadavg_end']} at the end")
    report(res)
    if args.json:
        write_json(res, args.json)
    if res.errors and status == 0:
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
