"""Build benchmark: the classic builder on berthd and on dockerd (when installed), side by side.

A 10-step Dockerfile (FROM busybox, COPY of ~1,000 small files, three RUNs writing files, ENV,
WORKDIR, LABEL, EXPOSE, CMD), driven by the docker CLI with DOCKER_BUILDKIT=0 against each engine:
a cold build (--no-cache), a fully cached rebuild, and a rebuild after one copied file changed
(which re-runs the COPY and the steps after it). Medians of --repeat runs; ratios dockerd/berth.

    python bench/build_bench.py [--repeat 5] [--files 1000] [--no-dockerd] [--no-copy]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engines import BerthEngine, DockerdEngine, Engine  # noqa: E402
from run_bench import BenchError  # noqa: E402

from berth.tools import mkbusybox  # noqa: E402

DOCKERFILE = """FROM busybox
{copy}ARG N=0
RUN echo one $N > /one
RUN mkdir -p /out && for i in 1 2 3 4 5; do echo $i > /out/$i; done
RUN cat /one /out/1 > /two
ENV APP=bench
WORKDIR /work
LABEL bench=build
EXPOSE 8080
CMD ["sh"]
"""


def make_context(root: str, files: int, copy: bool) -> str:
    ctx = os.path.join(root, "ctx")
    os.makedirs(os.path.join(ctx, "files"))
    for i in range(files):
        sub = os.path.join(ctx, "files", f"d{i % 20:02d}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"f{i:04d}.txt"), "w") as f:
            f.write(f"file {i}\n" * (1 + i % 7))
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE.format(copy="COPY files/ /files/\n" if copy else ""))
    return ctx


def touch_one(ctx: str, n: int) -> None:
    with open(os.path.join(ctx, "files", "d00", "f0000.txt"), "w") as f:
        f.write(f"changed {n}\n")


def measure(engine: Engine, ctx: str, repeat: int, copy: bool) -> dict[str, float]:
    tag = "buildbench:latest"
    engine.timed("build", "-q", "-t", tag, ctx)  # warm-up: page cache, first-use costs
    cold = []
    for _ in range(repeat):
        # nothing of the last build left: a reproducible builder would otherwise find every layer stored
        engine.rmi(tag)
        engine.run("image", "prune", "-f")
        cold.append(engine.timed("build", "-q", "--no-cache", "-t", tag, ctx))
    cached = [engine.timed("build", "-q", "-t", tag, ctx) for _ in range(repeat)]
    changed = []
    for n in range(repeat):
        if copy:
            touch_one(ctx, n)
        args = [] if copy else ["--build-arg", f"N={n + 1}"]  # without COPY: bust from the first RUN
        changed.append(engine.timed("build", "-q", *args, "-t", tag, ctx))
    return {"cold": statistics.median(cold), "cached": statistics.median(cached),
            "one file changed": statistics.median(changed)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--no-dockerd", action="store_true")
    p.add_argument("--no-copy", action="store_true", help="leave the COPY step out")
    a = p.parse_args()
    os.environ["DOCKER_BUILDKIT"] = "0"
    root = tempfile.mkdtemp(prefix="berth-build-bench-", dir="/var/tmp")
    busybox = os.path.join(root, "busybox.tar")
    with open(busybox, "wb") as f:
        f.write(mkbusybox.build("/bin/busybox", "busybox:latest"))
    ctx = make_context(root, a.files, not a.no_copy)
    results: dict[str, dict[str, float]] = {}
    engines: list[Engine] = []
    try:
        kinds: list[tuple[str, type[Engine]]] = [("berth", BerthEngine)]
        if not a.no_dockerd and os.path.exists("/usr/sbin/dockerd"):
            kinds.append(("dockerd", DockerdEngine))
        for label, kind in kinds:
            eroot = os.path.join(root, label)
            os.makedirs(eroot)
            engine = kind(eroot)  # type: ignore[call-arg]
            engines.append(engine)
            engine.run("load", "-i", busybox)
            results[label] = measure(engine, ctx, a.repeat, not a.no_copy)
            engine.stop()
            engines.remove(engine)
    except BenchError as e:
        sys.exit(f"build_bench: {e}")
    finally:
        for engine in engines:
            engine.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"10-step build, {a.files if not a.no_copy else 0} files copied, medians of {a.repeat} (seconds)")
    print(f"{'case':<18}" + "".join(f"{label:>10}" for label in results) + ("   dockerd/berth" if
                                                                             "dockerd" in results else ""))
    for case in ("cold", "cached", "one file changed"):
        row = f"{case:<18}" + "".join(f"{results[label][case]:>10.3f}" for label in results)
        if "dockerd" in results:
            row += f"   {results['dockerd'][case] / results['berth'][case]:>10.2f}x"
        print(row)


if __name__ == "__main__":
    main()
