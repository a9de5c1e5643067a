#!/usr/bin/env python3
"""Two or more builds of the plugin side by side, on the same inputs, in alternating order.

    python3 tests/benches/ab.py [--runs N] [--cmd lint|preview] [--dir DIR] [--shapes a,b]
        NAME=BINARY[:VAR=VALUE...] NAME=BINARY[:VAR=VALUE...] ...

For each shape, runs `BINARY CMD -f DIR/SHAPE.yaml -o json` N times per build (default 10),
the builds in turn and the order reversed every other round, so that a machine whose speed
drifts (a shared one) moves every build alike. Prints, per build, the median and the
smallest wall time and the largest peak resident set (from `wait4`). `VAR=VALUE` sets an
environment variable for that build only (`base=./old:MIMALLOC_PURGE_DELAY=10`).

The inputs are those of the compile benchmark's shapes, written first with
`bash tests/benches/shapes.sh` or one by one with
`cargo bench -p ambassador-compiler --bench compile -- --write SHAPE 20000 DIR/SHAPE.yaml`.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

SHAPES = "prefixes,headers,query,methods,regex,canary,wildcard,tls"


def build(spec):
    name, rest = spec.split("=", 1)
    binary, *settings = rest.split(":")
    env = dict(os.environ)
    for setting in settings:
        var, value = setting.split("=", 1)
        env[var] = value
    return name, binary, env


def run_once(binary, env, cmd, path):
    """Wall seconds and peak resident KiB of one run; exits on a failed start."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [binary, cmd, "-f", path, "-o", "json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    # lint exits 1 when it reports an error: a finding, not a failure of the run.
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        sys.exit(f"{binary} {cmd} {path}: exit status {status}")
    return wall, usage.ru_maxrss


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--cmd", default="lint", choices=["lint", "preview"])
    p.add_argument("--dir", default="/tmp/shapes")
    p.add_argument("--shapes", default=SHAPES)
    p.add_argument("builds", nargs="+")
    args = p.parse_args()
    builds = [build(b) for b in args.builds]
    with open("/proc/loadavg") as f:
        print(f"{args.cmd}, {args.runs} runs per build; load {' '.join(f.read().split()[:3])}")
    for shape in args.shapes.split(","):
        path = os.path.join(args.dir, f"{shape}.yaml")
        walls = {name: [] for name, _, _ in builds}
        peaks = {name: 0 for name, _, _ in builds}
        for r in range(args.runs):
            for name, binary, env in builds if r % 2 == 0 else builds[::-1]:
                wall, peak = run_once(binary, env, args.cmd, path)
                walls[name].append(wall)
                peaks[name] = max(peaks[name], peak)
        print(
            f"{shape:9}",
            "  ".join(
                f"{name}: median {statistics.median(w):.3f} s, least {min(w):.3f} s, "
                f"peak {peaks[name] / 1024:.1f} MiB"
                for name, w in walls.items()
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
