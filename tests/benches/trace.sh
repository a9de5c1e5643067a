#!/usr/bin/env bash
# Whole-process time of `kubectl ambassador lint`, `trace` (one request) and `test` (C route
# tests) on N prefix Mappings (the `prefixes` shape of compiler/benches/shapes.rs), with
# /usr/bin/time. The route tests are generated here: one request per Mapping picked at
# random (seeded), half of them expecting the Mapping, half a path no route takes.
#
#   bash tests/benches/trace.sh [N] [CASES] [ROUNDS]      # defaults: 10000 1000 7
#
# BIN=path/to/kubectl-ambassador measures that binary instead of building one in release.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-10000}
CASES=${2:-1000}
ROUNDS=${3:-7}
if [ -z "${BIN:-}" ]; then
    cargo build --quiet --release -p kubectl-ambassador
    BIN=target/release/kubectl-ambassador
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cargo bench --quiet -p ambassador-compiler --bench compile -- --write prefixes "$N" "$dir/in.yaml" >/dev/null
python3 - "$dir/in.yaml" "$CASES" >"$dir/cases.yaml" <<'PY'
import random, re, sys
text = open(sys.argv[1]).read()
pairs = re.findall(r"name: (svc-\d+)\n\s+hostname: (\S+)\n\s+prefix: (\S+)", text)
rng = random.Random(1)
print("tests:")
for i in range(int(sys.argv[2])):
    name, host, prefix = rng.choice(pairs)
    print(f"- name: case {i}")
    if i % 2 == 0:
        print(f"  input: {{url: 'http://{host}{prefix}x'}}")
        print(f"  expect: {{mapping: {name}, path: /x}}")
    else:
        print(f"  input: {{url: 'http://{host}/nowhere/{i}'}}")
        print("  expect: {no_route: true}")
PY
url=$(python3 -c "import re,sys; t=open(sys.argv[1]).read(); h,p=re.findall(r'hostname: (\S+)\n\s+prefix: (\S+)', t)[-1]; print(f'http://{h}{p}x')" "$dir/in.yaml")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "input: $N Mappings, $CASES route tests; $ROUNDS interleaved rounds, wall-clock seconds"
# Rounds interleave the three commands, so a busy spell on a shared machine hits all three.
for r in $(seq "$ROUNDS"); do
    /usr/bin/time -f "lint %e %M" "$BIN" lint -f "$dir/in.yaml" >/dev/null 2>>"$dir/times" || true
    /usr/bin/time -f "trace %e %M" "$BIN" trace -f "$dir/in.yaml" "$url" >/dev/null 2>>"$dir/times" || true
    /usr/bin/time -f "test %e %M" "$BIN" test -f "$dir/in.yaml" --cases "$dir/cases.yaml" >/dev/null 2>>"$dir/times" || true
done
for label in lint trace test; do
    grep "^$label " "$dir/times" | sort -k2 -n | awk -v l="$label" \
        '{t[NR]=$2; m[NR]=$3} END {printf "%-6s median %.2f s, min %.2f s, max %.2f s, peak RSS %d MiB\n", l, t[int((NR+1)/2)], t[1], t[NR], m[int((NR+1)/2)]/1024}'
done
"$BIN" test -f "$dir/in.yaml" --cases "$dir/cases.yaml" | grep -E '^[0-9]+ tests|^coverage' || true
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
