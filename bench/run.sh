#!/usr/bin/env bash
# Install the peers (once) and run the benchmark. Arguments go to `python -m bench.run`.
#   bench/run.sh                 # 3 rounds of 10 s per load, then the generation benchmark
#   bench/run.sh --rounds 1 --seconds 5 --skip-generation
#   bench/run.sh --only-api --rounds 3 --seconds 5   # the JSON API alone
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=bench/peers
mkdir -p "$PEERS"

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk nginx-light
fi
if [ ! -x "$PEERS/thumbor-venv/bin/thumbor" ]; then
    python3 -m venv "$PEERS/thumbor-venv"
    "$PEERS/thumbor-venv/bin/pip" install -q thumbor
fi
if [ ! -d "$PEERS/ipx/node_modules/ipx" ]; then
    (cd "$PEERS" && mkdir -p ipx && cd ipx && npm init -y >/dev/null && npm install -q ipx)
fi
.venv/bin/pip install -q -e '.[bench]'
exec .venv/bin/python -m bench.run "$@"
