#!/usr/bin/env bash
# Multi-core scaling: percore on 1, 2, 4 and 8 cores (0..N-1) with wrk on the other cores.
# Needs at least 2 x the largest server core count (16 CPUs for the 8-core row).
#
#   benches/scaling.sh                    # server cores 1 2 4 8, load on cores 8-15
#   SERVER_COUNTS="1 2" LOAD_CPUS=2-3 benches/scaling.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SERVER_COUNTS=${SERVER_COUNTS:-"1 2 4 8"}
LOAD_CPUS=${LOAD_CPUS:-8-15}
THREADS=${THREADS:-8}
CONNECTIONS=${CONNECTIONS:-400}
DURATION=${DURATION:-10}
PORT=${PORT:-8080}

for tool in wrk taskset; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "missing: $tool (apt-get install wrk util-linux)" >&2
        exit 1
    }
done
largest=$(echo "$SERVER_COUNTS" | tr ' ' '\n' | sort -n | tail -1)
if [ "$(nproc)" -lt $((2 * largest)) ]; then
    echo "need $((2 * largest)) CPUs for $largest server cores, have $(nproc)" >&2
    exit 1
fi
cargo build --release --quiet

echo "| server cores | req/s | per core | scaling vs 1 core |"
echo "| ---: | ---: | ---: | ---: |"
base=""
for n in $SERVER_COUNTS; do
    cores="0-$((n - 1))"
    taskset -c "$cores" target/release/percore --port "$PORT" --cores "$cores" >/dev/null 2>&1 &
    pid=$!
    sleep 1
    rps=$(taskset -c "$LOAD_CPUS" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" \
        -s benches/keepalive.lua "http://127.0.0.1:$PORT/echo?name=Abcde" |
        awk '/^Requests\/sec/ { print $2 }')
    kill -INT "$pid"
    wait "$pid" || true
    base=${base:-$rps}
    awk -v n="$n" -v r="$rps" -v b="$base" \
        'BEGIN { printf "| %d | %.0f | %.0f | %.2f |\n", n, r, r / n, r / b }'
done
