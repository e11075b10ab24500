#!/usr/bin/env bash
# Side-by-side load benchmark: percore vs nginx on loopback, each server alone on core 0,
# every load generator on core 1, runs interleaved A B A B, medians reported.
#
#   benches/load.sh                 # all workloads, 3 repetitions
#   REPS=5 N=2000000 benches/load.sh
#   WORKLOADS="ab-k-50 idle" benches/load.sh
#   WORKLOADS="file-4k file-1m" benches/load.sh    # static files only
#
# Per run it records req/s and server CPU per request two ways: the busy time of core 0 from
# /proc/stat (user+nice+system+irq+softirq; io_uring work done in kernel threads or
# interrupt context lands there too) and the server process's own utime+stime.
# Nothing is installed: missing tools are named with the command that installs them.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
N=${N:-1000000}              # requests per ab -k run
N_CLOSE=${N_CLOSE:-100000}   # requests per ab run without keep-alive
DURATION=${DURATION:-10}     # seconds per wrk run
IDLE=${IDLE:-10000}          # idle keep-alive connections for the memory row
WORKLOADS=${WORKLOADS:-"ab-k-50 ab-k-500 wrk-50 wrk-pipe-16 ab-close-50 file-4k file-1m idle report-cost"}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PERCORE_PORT=8080
NGINX_PORT=8081
QUIET_PORT=8082              # percore with report.enabled = false, for the report-cost row
URL_PATH='/echo?name=Abcde'

missing=()
for tool in ab wrk nginx taskset curl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "missing: ${missing[*]}" >&2
    echo "install them with: apt-get install apache2-utils wrk nginx util-linux curl" >&2
    exit 1
fi

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d /tmp/percore-bench.XXXXXX)
trap 'stop_servers; rm -rf "$work"' EXIT
# The files of the static rows, served by both: nginx finds them under its prefix.
site="$work/nginx/site"
mkdir -p "$site"
head -c 4096 /dev/urandom >"$site/4k.bin"
head -c 1048576 /dev/urandom >"$site/1m.bin"
site_made=$SECONDS

cargo build --release --quiet
cargo bench --no-run --quiet --bench idle_connections 2>/dev/null

percore_pid=""
nginx_pid=""
quiet_pid=""
start_servers() {
    sed 's/^enabled = true/enabled = false/' config/percore.toml >"$work/quiet.toml"
    taskset -c "$SERVER_CPU" target/release/percore --config "$work/quiet.toml" \
        --port "$QUIET_PORT" --cores "$SERVER_CPU" --root "$site" >"$work/quiet.log" 2>&1 &
    quiet_pid=$!
    taskset -c "$SERVER_CPU" target/release/percore --config config/percore.toml \
        --port "$PERCORE_PORT" --cores "$SERVER_CPU" --root "$site" >"$work/percore.log" 2>&1 &
    percore_pid=$!
    taskset -c "$SERVER_CPU" nginx -c "$PWD/benches/nginx.conf" -p "$work/nginx/" \
        >"$work/nginx.log" 2>&1 &
    nginx_pid=$!
    for port in $PERCORE_PORT $NGINX_PORT $QUIET_PORT; do
        for _ in $(seq 100); do
            curl -sf "http://127.0.0.1:$port$URL_PATH" >/dev/null 2>&1 && break
            sleep 0.1
        done
        curl -sf "http://127.0.0.1:$port$URL_PATH" | grep -q 'Hi, Abcde!' || {
            echo "server on port $port is not answering; logs in $work" >&2
            cat "$work"/*.log >&2
            exit 1
        }
    done
}
stop_servers() {
    [ -n "$percore_pid" ] && kill -INT "$percore_pid" 2>/dev/null && wait "$percore_pid" 2>/dev/null
    [ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
    [ -n "$quiet_pid" ] && kill -INT "$quiet_pid" 2>/dev/null && wait "$quiet_pid" 2>/dev/null
    percore_pid=""
    nginx_pid=""
    quiet_pid=""
}

core_busy() { # busy ticks of $SERVER_CPU
    awk -v c="cpu$SERVER_CPU" '$1 == c { print $2 + $3 + $4 + $7 + $8 }' /proc/stat
}
proc_ticks() { # utime+stime of a process, all threads
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
hz=$(getconf CLK_TCK)

# run_load SERVER PORT WORKLOAD -> prints "reqs rps core_us proc_us"
run_load() {
    local pid=$1 port=$2 workload=$3 out="$work/out"
    local url="http://127.0.0.1:$port$URL_PATH"
    case $workload in
        file-4k) url="http://127.0.0.1:$port/4k.bin" ;;
        file-1m) url="http://127.0.0.1:$port/1m.bin" ;;
    esac
    local core0 proc0 core1 proc1 reqs rps secs
    core0=$(core_busy)
    proc0=$(proc_ticks "$pid")
    case $workload in
        ab-k-50) taskset -c "$CLIENT_CPU" ab -q -k -c 50 -n "$N" "$url" >"$out" 2>&1 ;;
        ab-k-500) taskset -c "$CLIENT_CPU" ab -q -k -c 500 -n "$N" "$url" >"$out" 2>&1 ;;
        ab-close-50) taskset -c "$CLIENT_CPU" ab -q -c 50 -n "$N_CLOSE" "$url" >"$out" 2>&1 ;;
        wrk-50) taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d"${DURATION}s" \
            -s benches/keepalive.lua "$url" >"$out" 2>&1 ;;
        wrk-pipe-16) taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d"${DURATION}s" \
            -s benches/pipeline.lua "$url" >"$out" 2>&1 ;;
        file-*) taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d"${DURATION}s" \
            -s benches/keepalive.lua "$url" >"$out" 2>&1 ;;
    esac
    core1=$(core_busy)
    proc1=$(proc_ticks "$pid")
    case $workload in
        ab-*)
            failed=$(awk '/^Failed requests/ { print $3 }' "$out")
            non2xx=$(awk '/^Non-2xx/ { print $3 }' "$out")
            if [ "${failed:-1}" != 0 ] || [ -n "$non2xx" ]; then
                echo "$workload on port $port: failed=${failed:-?} non-2xx=${non2xx:-0}" >&2
                cat "$out" >&2
                exit 1
            fi
            reqs=$(awk '/^Complete requests/ { print $3 }' "$out")
            rps=$(awk '/^Requests per second/ { print $4 }' "$out")
            ;;
        wrk-* | file-*)
            if grep -q "Non-2xx\|Socket errors" "$out"; then
                echo "$workload on port $port reported errors:" >&2
                cat "$out" >&2
                exit 1
            fi
            reqs=$(awk '/requests in/ { print $1 }' "$out")
            rps=$(awk '/^Requests\/sec/ { print $2 }' "$out")
            ;;
    esac
    awk -v r="$reqs" -v s="$rps" -v c=$((core1 - core0)) -v p=$((proc1 - proc0)) -v hz="$hz" \
        'BEGIN { printf "%d %.0f %.3f %.3f\n", r, s, c * 1e6 / hz / r, p * 1e6 / hz / r }'
}

# idle_rss PID PORT -> KiB of RSS per idle connection
idle_rss() {
    local pid=$1 port=$2 before after fifo="$work/idle.fifo"
    before=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
    rm -f "$fifo"
    mkfifo "$fifo"
    taskset -c "$CLIENT_CPU" cargo bench --quiet --bench idle_connections -- \
        "127.0.0.1:$port" "$IDLE" <"$fifo" >"$work/idle.out" 2>&1 &
    local client=$!
    exec 9>"$fifo"
    for _ in $(seq 600); do
        grep -q holding "$work/idle.out" 2>/dev/null && break
        kill -0 $client 2>/dev/null || break
        sleep 0.1
    done
    grep -q holding "$work/idle.out" || { cat "$work/idle.out" >&2; exit 1; }
    sleep 1
    after=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
    exec 9>&-
    wait $client
    awk -v b="$before" -v a="$after" -v n="$IDLE" 'BEGIN { printf "%.2f %d %d\n", (a - b) / n, b, a }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

start_servers
echo "percore vs nginx: server on cpu $SERVER_CPU, load on cpu $CLIENT_CPU, $REPS repetitions, medians"
echo "$(date -u +%Y-%m-%d) $(uname -r) $(nproc) cpus, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
echo
printf '| %-12s | %12s | %12s | %6s | %11s | %11s | %6s | %11s | %11s |\n' \
    workload "percore r/s" "nginx r/s" ratio "percore µs" "nginx µs" "cpu×" "percore pµs" "nginx pµs"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
# compare LABEL WORKLOAD PID_A PORT_A PID_B PORT_B: interleaved runs, one table row of medians
compare() {
    local label=$1 workload=$2
    : >"$work/a" && : >"$work/b"
    for _ in $(seq "$REPS"); do
        run_load "$3" "$4" "$workload" >>"$work/a"
        run_load "$5" "$6" "$workload" >>"$work/b"
    done
    local col
    for col in 2 3 4; do
        echo "$(cut -d' ' -f$col "$work/a" | median) $(cut -d' ' -f$col "$work/b" | median)"
    done | paste -sd' ' | awk -v w="$label" '{
        printf "| %-12s | %12.0f | %12.0f | %6.2f | %11.2f | %11.2f | %6.2f | %11.2f | %11.2f |\n",
            w, $1, $2, $1 / $2, $3, $4, $3 / $4, $5, $6 }'
}

for workload in $WORKLOADS; do
    case $workload in
        idle)
            # Fresh processes: memory freed by earlier runs would hide the cost of new
            # connections.
            stop_servers
            start_servers
            p=$(idle_rss "$percore_pid" $PERCORE_PORT)
            n=$(idle_rss "$nginx_pid" $NGINX_PORT)
            echo "| idle $IDLE: RSS KiB per connection | percore $(echo "$p" | cut -d' ' -f1) | nginx $(echo "$n" | cut -d' ' -f1) | | (percore RSS $(echo "$p" | cut -d' ' -f2)→$(echo "$p" | cut -d' ' -f3) KiB, nginx $(echo "$n" | cut -d' ' -f2)→$(echo "$n" | cut -d' ' -f3) KiB) | | | | |"
            ;;
        report-cost)
            echo
            echo "Reporting cost, ab -k -c 50: percore with reports (A) vs report.enabled = false (B)"
            compare "reports on/off" ab-k-50 "$percore_pid" $PERCORE_PORT "$quiet_pid" $QUIET_PORT
            ;;
        file-*)
            # Files younger than 2 s are not cached (their times could hide a change).
            sleep $((site_made + 3 > SECONDS ? site_made + 3 - SECONDS : 0))
            compare "$workload" "$workload" "$percore_pid" $PERCORE_PORT "$nginx_pid" $NGINX_PORT
            ;;
        *) compare "$workload" "$workload" "$percore_pid" $PERCORE_PORT "$nginx_pid" $NGINX_PORT ;;
    esac
done
echo
echo "file-4k, file-1m: wrk -c 50 keep-alive GETs of a 4 KiB and a 1 MiB file (nginx: sendfile)."
echo "r/s: requests per second; ratio: percore/nginx; µs: server core busy time per request"
echo "(/proc/stat); cpu×: percore/nginx core time per request; pµs: server process utime+stime"
echo "per request."
