#!/usr/bin/env bash
# The full run of the tracer-against-Envoy agreement test (issue 12, item 4): several seeds,
# at least 10,000 requests in all, each seed in its own test process. Prints each seed's
# figures and the total time; exits non-zero when any seed disagrees (its log is kept).
#
# Usage: tests/agreement.sh [SEEDS...]        (default: 1 2 3 4 5)
#   AGREEMENT_REQUESTS   requests per seed (default 2,000)
#   AGREEMENT_PER_CONFIG requests per configuration (default 100)
#   AGREEMENT_CANARY     requests per canary share check (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3 4 5)
export AGREEMENT_REQUESTS=${AGREEMENT_REQUESTS:-2000}
# Build once, then run the test binary itself for each seed: no rebuild between seeds.
bin=$(cargo test -q -p ambassador-e2e --test agreement --no-run --message-format=json \
  | grep '"name":"agreement"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$bin" ] || { echo "could not build the agreement test"; exit 2; }
start=$(date +%s)
failed=0
logs=${CARGO_TARGET_DIR:-target}
for seed in "${seeds[@]}"; do
  log=$logs/agreement-seed-$seed.log
  set +e +o pipefail
  AGREEMENT_SEED=$seed "$bin" --nocapture 2>&1 | tee "$log" | grep -E '^agreement:'
  status=${PIPESTATUS[0]}
  set -e -o pipefail
  [ "$status" -eq 0 ] || { echo "seed $seed: the tracer and Envoy disagree; details in $log"; failed=$((failed + 1)); }
done
echo "total: ${#seeds[@]} seeds x $AGREEMENT_REQUESTS requests in $(( $(date +%s) - start )) s on $(nproc) cores ($(uname -m))"
[ "$failed" -eq 0 ]
