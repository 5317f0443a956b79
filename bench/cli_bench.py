"""Start-up cost of the ``berth`` CLI beside the docker CLI, against the same private berthd.

Medians of N runs (default 20, after 2 unrecorded warm-ups; docker and berth runs alternate) of
``version``, ``ps`` with 10 running containers, ``images`` and ``--help``, each a fresh process with
its output thrown away; then the import cost of what a Python CLI could be built on (interpreter
alone, click, http.client, the Docker SDK), measured the same way. Needs root (berthd). Usage:

    sudo .venv/bin/python bench/cli_bench.py [--runs 20] [--json out.json]

The berth CLI is run as its console script does (``from berth.cli.main import main; main()``) from
the repository root, with bytecode caches written (``PYTHONDONTWRITEBYTECODE`` unset and
``berth/cli`` compiled first) as after a ``pip install``.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from run_bench import BenchError, Berthd, unmount_all  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BERTH = [sys.executable, "-c", "from berth.cli.main import main; main()"]
COMMANDS = [["version"], ["ps"], ["images"], ["--help"]]
TARGET_RATIO = 3.0
HELP_BUDGET_MS = 100.0


def _timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT, timeout=60)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise BenchError(f"{' '.join(argv[-2:])}: exit {p.returncode}: {p.stderr.decode()[-300:]}")
    return dt


def medians_ms(argvs: list[list[str]], env: dict[str, str], runs: int) -> list[float]:
    """Median wall time of each command line, the lines run in turn (a, b, a, b, ...) so that a
    change in the machine's load hits them alike; 2 warm-up rounds are not recorded."""
    times: list[list[float]] = [[] for _ in argvs]
    for i in range(runs + 2):
        for j, argv in enumerate(argvs):
            dt = _timed(argv, env)
            if i >= 2:
                times[j].append(dt)
    return [statistics.median(t) * 1000 for t in times]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        print("the docker CLI is not installed: nothing to compare with", file=sys.stderr)
        return 2
    compileall.compile_dir(os.path.join(ROOT, "berth", "cli"), quiet=1)
    root = tempfile.mkdtemp(prefix="berth-clibench-", dir="/var/tmp")
    berthd = Berthd(root)
    results: dict[str, object] = {"runs": args.runs}
    try:
        berthd.start()
        assert berthd.client is not None
        from berth.tools import mkbusybox

        for _ in berthd.client.api.load_image(mkbusybox.build("/bin/busybox", "busybox:latest")):
            pass
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "DOCKER_CONTEXT")}
        env["DOCKER_HOST"] = berthd.host
        env.pop("BERTH_HOST", None)
        for _ in range(10):
            subprocess.run([docker_cli, "run", "-d", "busybox", "sleep", "3600"], env=env, check=True,
                           capture_output=True, timeout=60)
        load = os.getloadavg()
        results["loadavg"] = load
        # the figures are start-up times: a busy machine inflates the interpreter's share first
        print(f"berthd on {berthd.host}, 10 running containers, medians of {args.runs} runs, "
              f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
        print(f"{'command':<10} {'docker':>9} {'berth':>9} {'ratio':>6}  target")
        rows = {}
        failed = False
        for cmd in COMMANDS:
            d, b = medians_ms([[docker_cli, *cmd], [*BERTH, *cmd]], env, args.runs)
            if cmd == ["--help"]:
                ok = b < HELP_BUDGET_MS
                target = f"< {HELP_BUDGET_MS:.0f} ms"
            else:
                ok = b <= TARGET_RATIO * d
                target = f"<= {TARGET_RATIO:.0f}x docker"
            failed |= not ok
            rows[" ".join(cmd)] = {"docker_ms": round(d, 1), "berth_ms": round(b, 1), "ok": ok}
            print(f"{' '.join(cmd):<10} {d:7.1f}ms {b:7.1f}ms {b / d:5.2f}x  {target} {'ok' if ok else 'MISSED'}")
        results["commands"] = rows
        print("\nimport cost (fresh interpreter, median):")
        imports = {}
        cases = (("python alone", "pass"), ("socket+json (lean client)", "import socket, json"),
                 ("click", "import click"), ("http.client", "import http.client"), ("docker SDK", "import docker"),
                 ("berth.cli fast path", "import berth.cli.fast, berth.cli.rows, berth.cli.client"))
        figures = medians_ms([[sys.executable, "-c", code] for _, code in cases], env, args.runs)
        base = figures[0]
        for (label, _), ms in zip(cases, figures, strict=True):
            imports[label] = round(ms, 1)
            extra = "" if label == "python alone" else f"  (+{ms - base:.1f} ms)"
            print(f"  {label:<28}{ms:7.1f} ms{extra}")
        results["imports"] = imports
    finally:
        berthd.stop()
        unmount_all(root)
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
