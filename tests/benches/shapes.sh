#!/usr/bin/env bash
# Whole-process time and peak memory of `kubectl ambassador preview -o json` and
# `lint -o json` on each route-table shape of the compile benchmark
# (compiler/benches/shapes.rs), measured with /usr/bin/time -v.
#
#   bash tests/benches/shapes.sh [N] [ROUNDS] [SHAPES]
#
# N Mappings (default 20000), ROUNDS alternating rounds of preview then lint per shape
# (default 3; the figures are medians), SHAPES a comma-separated list (default: all).
# Builds the plugin in release (`cargo build --release -p kubectl-ambassador`) and writes
# the inputs with the benchmark binary (`--write SHAPE N PATH`), so both measure the same
# text. Prints the load average before and after: the machine may be shared.
# BIN=path/to/kubectl-ambassador measures that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-20000}
ROUNDS=${2:-3}
SHAPES=${3:-prefixes,headers,query,methods,regex,canary,wildcard,tls}

# BIN=path measures another build of the plugin (e.g. an earlier commit's) on the same inputs.
if [ -z "${BIN:-}" ]; then
    cargo build --quiet --release -p kubectl-ambassador
    BIN=target/release/kubectl-ambassador
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

IFS=, read -r -a shapes <<<"$SHAPES"
for s in "${shapes[@]}"; do
    cargo bench --quiet -p ambassador-compiler --bench compile -- --write "$s" "$N" "$dir/$s.yaml" >/dev/null
done

# One run: prints "seconds maxrss_kib exit_status".
measure() {
    local out=$dir/time.txt
    local status=0
    /usr/bin/time -v -o "$out" "$@" >/dev/null 2>"$dir/stderr.txt" || status=$?
    awk -v st="$status" '
        /Elapsed \(wall clock\)/ { n = split($NF, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i] }
        /Maximum resident set size/ { m = $NF }
        END { printf "%.3f %d %d\n", s, m, st }' "$out"
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "nproc $(nproc); $(free -h | awk '/Mem:/ { print "memory " $2 " total, " $7 " available" }')"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-9s %7s %9s | %-28s | %-28s | %s\n' shape Mappings "input MB" \
    "preview s, median (all)" "lint s, median (all)" "peak MiB preview / lint; lint exit"
for s in "${shapes[@]}"; do
    f=$dir/$s.yaml
    pt=() pm=() lt=() lm=() lstatus=()
    for _ in $(seq "$ROUNDS"); do
        read -r t m st < <(measure "$BIN" preview -f "$f" -o json)
        [ "$st" = 0 ] || { echo "preview failed on $s: $(head -3 "$dir/stderr.txt")" >&2; exit 1; }
        pt+=("$t") pm+=("$m")
        read -r t m st < <(measure "$BIN" lint -f "$f" -o json)
        lt+=("$t") lm+=("$m") lstatus+=("$st")
    done
    printf '%-9s %7s %9.1f | %-28s | %-28s | %s / %s; %s\n' "$s" "$N" \
        "$(awk -v b="$(stat -c %s "$f")" 'BEGIN { print b / 1e6 }')" \
        "$(printf '%s\n' "${pt[@]}" | median) (${pt[*]})" \
        "$(printf '%s\n' "${lt[@]}" | median) (${lt[*]})" \
        "$(printf '%s\n' "${pm[@]}" | median | awk '{ printf "%.0f", $1 / 1024 }')" \
        "$(printf '%s\n' "${lm[@]}" | median | awk '{ printf "%.0f", $1 / 1024 }')" \
        "${lstatus[0]}"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
