#!/usr/bin/env bash
# Side-by-side load benchmark on loopback: percore, nginx and the bare io_uring loop
# (benches/floor.rs, what the kernel allows), each server alone on core 0, every load
# generator on core 1, runs interleaved A B C A B C, medians reported.
#
#   benches/load.sh                 # all workloads, 3 repetitions
#   REPS=5 N=2000000 benches/load.sh
#   WORKLOADS="ab-k-50 idle syscalls" benches/load.sh
#   WORKLOADS="file-4k file-1m" benches/load.sh    # static files only (no bare loop there)
#   WORKLOADS=post-1k benches/load.sh               # a library handler reading 1 KiB bodies
#   BASELINE=/path/to/old/percore WORKLOADS=baseline benches/load.sh   # A/B two builds
#   BASELINE=/path/to/old/percore WORKLOADS=tls-baseline benches/load.sh   # the same over TLS
#   WORKLOADS=access-log benches/load.sh            # the access log on against off
#   WORKLOADS="tls-wrk-50 tls-wrk-pipe-16 tls-ab-close-50 tls-resume tls-file-1m tls-idle tls-syscalls" benches/load.sh
#                                                   # HTTPS: percore TLS vs percore cleartext vs nginx TLS
#   WORKLOADS=proxy benches/load.sh                 # reverse proxies: percore, nginx, HAProxy;
#                                                   # then percore's proxy vs the bare relay
#   WORKLOADS=proxy-sizes benches/load.sh           # the same proxies: 4 KiB, 64 KiB, 1 MiB answers, 64 KiB POSTs
#   WORKLOADS=ws benches/load.sh                    # WebSocket echo: 512 B text, 16 KiB binary, over
#                                                   # TLS, deflate; tokio-tungstenite, fastwebsockets
#   WORKLOADS=ws-idle benches/load.sh               # memory per idle WebSocket, ws:// and wss://
#   WORKLOADS=ws-syscalls benches/load.sh           # socket syscalls per echoed WebSocket message
#   WORKLOADS=ws-fanout benches/load.sh             # one publish to a group of 10,000 WebSockets
#                                                   # over two cores: time, CPU and memory
#   WORKLOADS=proxy-idle-close benches/load.sh      # failed requests through each proxy to a backend
#                                                   # that closes idle connections after 100 ms
#   WORKLOADS=compression benches/load.sh           # a 64 KiB HTML page: gzip 1 and 6 on the fly (per
#                                                   # response and cached) vs nginx's gzip, a precompressed
#                                                   # .gz, zstd 3 and Brotli 4; a 1 MiB page past the
#                                                   # cache coded as it is read; the output sizes
#   NGINX_SUITES=percore WORKLOADS=… benches/load.sh   # nginx choosing cipher suites as percore does
#   FLOOR_SRC=/path/to/other_floor.c WORKLOADS=… benches/load.sh   # another bare loop (C, liburing)
#
# Per run it records req/s and server CPU per request: the busy time of core 0 from /proc/stat
# (user+nice+system+irq+softirq; io_uring work done in kernel threads or interrupt context
# lands there too). The bare loop counts requests, parses nothing else and answers a fixed
# response: it is a measuring stick, and the ratio to it is what percore's own work costs.
# The proxy rows have their own: the bare relay (benches/relay_floor.rs), which gives each
# client one upstream connection and copies bytes both ways unparsed through io_uring, the
# kernel's cost of a proxy's two legs.
# Nothing is installed: missing tools are named with the command that installs them.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
N=${N:-1000000}              # requests per ab -k run
N_CLOSE=${N_CLOSE:-100000}   # requests per ab run without keep-alive
N_STRACE=${N_STRACE:-20000}  # requests counted under strace (it slows the server down)
DURATION=${DURATION:-10}     # seconds per wrk run
IDLE=${IDLE:-10000}          # idle keep-alive connections for the memory row
N_POST=${N_POST:-100000}     # requests per ab -k run of the proxy-sizes 64 KiB POST row
IDLE_CLOSE_DURATION=${IDLE_CLOSE_DURATION:-10}  # seconds of wrk per proxy, proxy-idle-close row
WORKLOADS=${WORKLOADS:-"ab-k-50 ab-k-500 wrk-50 wrk-pipe-16 ab-close-50 file-4k file-1m post-1k idle syscalls report-cost access-log tls-wrk-50 tls-wrk-pipe-16 tls-ab-close-50 tls-resume tls-file-1m tls-idle tls-syscalls tls-flood tls-abuse"}
N_TLS_CLOSE=${N_TLS_CLOSE:-20000}  # requests per ab run over TLS without keep-alive (a handshake each)
N_RESUME=${N_RESUME:-20000}        # connections of the resumed-handshake row
TLS_IDLE=${TLS_IDLE:-3000}         # idle TLS keep-alive connections for the TLS memory row
BASELINE=${BASELINE:-}       # another percore binary, for the baseline row
NGINX_SUITES=${NGINX_SUITES:-client}  # "percore": nginx prefers AES-128-GCM as percore does
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PERCORE_PORT=8080
NGINX_PORT=8081
QUIET_PORT=8082              # percore with report.enabled = false, for the report-cost row
FLOOR_PORT=8083
APP_PORT=8084                # benches/app_server.rs: percore's routes + POST /upper (library API)
BASELINE_PORT=8085
BASELINE_TLS_PORT=8092       # the baseline build's TLS listener
LOGGED_PORT=8086             # percore with the access log on, for the access-log row
PROXY_PORT=8094              # percore --proxy, for the proxy rows
NGINX_PROXY_PORT=8095        # nginx proxy_pass (benches/nginx.conf)
HAPROXY_PORT=8096            # HAProxy, http-reuse safe
BACKEND_PORT=8097            # the proxies' backend: percore on the load's core
RELAY_PORT=8098              # the bare relay (benches/relay_floor.rs) in front of the backend
WS_ANCHOR_PORT=8099          # tokio-tungstenite's echo (benches/ws_anchor_tungstenite.rs)
FANOUT_PORT=8100             # percore on two cores, for the ws-fanout row
WS_FAST_PORT=8101            # fastwebsockets' echo (benches/ws_anchor_fastwebsockets.rs)
GZIP1_PORT=8102              # percore, compression rows: gzip level 1, compressed per response
GZIP6_PORT=8103              # percore, compression rows: gzip 6, zstd 3, Brotli 4, per response
GZIP1_CACHED_PORT=8104       # percore, compression rows: gzip level 1, cached (the default)
NGINX_GZIP1_PORT=8110        # nginx, compression rows: gzip_comp_level 1 (benches/nginx.conf)
NGINX_GZIP6_PORT=8111        # nginx, compression rows: gzip_comp_level 6, gzip_static on
WS_BIG_PORT=8105             # percore with 16 KiB receive buffers, for the ws-16k-rb16k row
PERCORE_TLS_PORT=8090        # percore's TLS listener (the same process as PERCORE_PORT)
NGINX_TLS_PORT=8091          # nginx's TLS listener (benches/nginx.conf)
URL_PATH='/echo?name=Abcde'
# The bare loop: benches/floor.rs (a bench target), or a C file taking the port as its one
# argument, built with gcc -O2 -luring.
FLOOR_SRC=${FLOOR_SRC:-benches/floor.rs}

missing=()
for tool in ab wrk nginx taskset curl gcc strace openssl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
install="apache2-utils wrk nginx util-linux curl gcc strace openssl"
if [[ $FLOOR_SRC == *.c ]]; then
    [ -f /usr/include/liburing.h ] || missing+=(liburing-dev)
    install="$install liburing-dev"
fi
if ((${#missing[@]})); then
    echo "missing: ${missing[*]}" >&2
    echo "install them with: apt-get install $install" >&2
    exit 1
fi
case $FLOOR_SRC in
    benches/floor.rs) ;;
    *.c) [ -f "$FLOOR_SRC" ] || { echo "no bare loop at $FLOOR_SRC" >&2; exit 1; } ;;
    *) echo "FLOOR_SRC: benches/floor.rs or a C file, not $FLOOR_SRC" >&2; exit 1 ;;
esac

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d /tmp/percore-bench.XXXXXX)
trap 'stop_servers; rm -rf "$work"' EXIT
# The files of the static rows, served by both: nginx finds them under its prefix.
site="$work/nginx/site"
mkdir -p "$site"
head -c 4096 /dev/urandom >"$site/4k.bin"
head -c 65536 /dev/urandom >"$site/64k.bin"
head -c 1048576 /dev/urandom >"$site/1m.bin"
head -c 1024 /dev/urandom | base64 -w 0 | head -c 1024 >"$work/1k.txt"
head -c 49152 /dev/urandom | base64 -w 0 | head -c 65536 >"$work/64k.txt"
# The compression rows' pages: varied HTML, the same bytes on every run (no random numbers:
# awk's differ between implementations). page.html is 64 KiB, cached by percore; large.html
# is 1 MiB, past static.cache_file_max_bytes, so coded as it is read; pre.html is the page
# with a precompressed pre.html.gz beside it (made after it, so not older).
# html_lines N -> N lines of the page's HTML.
html_lines() {
    awk -v lines="$1" 'BEGIN {
        n = split("percore serves static files and handlers from one io_uring per core with " \
            "no lock on the request path while nginx answers the same page from a worker " \
            "process compressed once per response or read from a variant made ahead of time", w, " ")
        print "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Compression</title></head><body>"
        for (i = 0; i < lines; i++) {
            line = "<p class=\"c" (i % 17) "\" id=\"p" i "\">"
            for (j = 0; j < 6 + i % 11; j++) line = line w[1 + (i * 7 + j * 13) % n] " "
            print line "<a href=\"/item/" (i * 31) % 997 "\">item " i "</a></p>"
        }
    }'
}
# (Cut after awk is done: a pipe into head would end awk with SIGPIPE, which pipefail counts.)
html_lines 1500 >"$work/page.full"
head -c 65536 "$work/page.full" >"$site/page.html"
html_lines 12000 >"$work/large.full"
head -c 1048576 "$work/large.full" >"$site/large.html"
cp "$site/page.html" "$site/pre.html"
gzip -9 -n -c "$site/pre.html" >"$site/pre.html.gz"
site_made=$SECONDS
# One ECDSA P-256 certificate for percore and nginx alike (not a CA: the resumption client
# trusts it as it is, and webpki refuses a CA certificate as a server's); nginx reads its copy of
# benches/nginx.conf from $work/nginx, and its tls/ paths relative to it.
tls_dir="$work/nginx/tls"
mkdir -p "$tls_dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$tls_dir/key.pem" -out "$tls_dir/cert.pem" -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" >/dev/null 2>&1
cp benches/nginx.conf "$work/nginx/nginx.conf"
if [ "$NGINX_SUITES" = percore ]; then
    # nginx choosing suites as percore does (AES-128-GCM first, server's order), instead of
    # following the client's order (OpenSSL's and rustls's clients list AES-256-GCM first).
    sed -i 's|^\( *\)ssl_session_timeout 1h;|&\n\1ssl_prefer_server_ciphers on;\n\1ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305;\n\1ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;|' \
        "$work/nginx/nginx.conf"
fi
tls_flags=(--tls-port "$PERCORE_TLS_PORT" --tls-cert "$tls_dir/cert.pem" --tls-key "$tls_dir/key.pem")

cargo build --release --quiet
cargo bench --no-run --quiet --bench idle_connections 2>/dev/null
cargo bench --no-run --quiet --bench app_server 2>/dev/null
cargo bench --no-run --quiet --bench tls_resume 2>/dev/null
app_server=$(ls -t target/release/deps/app_server-* | grep -v '\.d$' | head -1)
tls_resume=$(ls -t target/release/deps/tls_resume-* | grep -v '\.d$' | head -1)
cargo bench --no-run --quiet --bench ws_load 2>/dev/null
ws_load=$(ls -t target/release/deps/ws_load-* | grep -v '\.d$' | head -1)
cargo bench --no-run --quiet --bench ws_anchor_tungstenite 2>/dev/null
cargo bench --no-run --quiet --bench ws_fanout 2>/dev/null
ws_fanout=$(ls -t target/release/deps/ws_fanout-* | grep -v '\.d$' | head -1)
ws_anchor=$(ls -t target/release/deps/ws_anchor_tungstenite-* | grep -v '\.d$' | head -1)
cargo bench --no-run --quiet --bench ws_anchor_fastwebsockets 2>/dev/null
ws_fast=$(ls -t target/release/deps/ws_anchor_fastwebsockets-* | grep -v '\.d$' | head -1)
cargo bench --no-run --quiet --bench tls_flood 2>/dev/null
tls_flood=$(ls -t target/release/deps/tls_flood-* | grep -v '\.d$' | head -1)
cargo bench --no-run --quiet --bench tls_abuse 2>/dev/null
tls_abuse=$(ls -t target/release/deps/tls_abuse-* | grep -v '\.d$' | head -1)
if [ "$FLOOR_SRC" = benches/floor.rs ]; then
    cargo bench --no-run --quiet --bench floor 2>/dev/null
    floor=$(ls -t target/release/deps/floor-* | grep -v '\.d$' | head -1)
else
    floor="$work/floor"
    gcc -O2 -Wall -o "$floor" "$FLOOR_SRC" -luring
fi
cargo bench --no-run --quiet --bench relay_floor 2>/dev/null
relay_floor=$(ls -t target/release/deps/relay_floor-* | grep -v '\.d$' | head -1)

percore_pid=""
nginx_pid=""
quiet_pid=""
floor_pid=""
app_pid=""
baseline_pid=""
logged_pid=""
proxy_pid=""                 # the proxy rows' (start_proxies)
backend_pid=""
haproxy_pid=""
relay_pid=""
# await_echo PORT: waits (10 s at most) for /echo to answer on PORT, or stops the run with
# every server's log.
await_echo() {
    local port=$1
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port$URL_PATH" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -sf "http://127.0.0.1:$port$URL_PATH" | grep -q 'Hi, Abcde!' || {
        echo "server on port $port is not answering; logs in $work" >&2
        cat "$work"/*.log >&2
        exit 1
    }
}
start_servers() {
    sed 's/^enabled = true/enabled = false/' config/percore.toml >"$work/quiet.toml"
    taskset -c "$SERVER_CPU" target/release/percore --config "$work/quiet.toml" \
        --port "$QUIET_PORT" --cores "$SERVER_CPU" --root "$site" >"$work/quiet.log" 2>&1 &
    quiet_pid=$!
    taskset -c "$SERVER_CPU" target/release/percore --config config/percore.toml \
        --port "$PERCORE_PORT" --cores "$SERVER_CPU" --root "$site" "${tls_flags[@]}" \
        >"$work/percore.log" 2>&1 &
    percore_pid=$!
    taskset -c "$SERVER_CPU" nginx -c "$work/nginx/nginx.conf" -p "$work/nginx/" \
        >"$work/nginx.log" 2>&1 &
    nginx_pid=$!
    taskset -c "$SERVER_CPU" "$floor" "$FLOOR_PORT" >"$work/floor.log" 2>&1 &
    floor_pid=$!
    taskset -c "$SERVER_CPU" "$app_server" --config config/percore.toml \
        --port "$APP_PORT" --cores "$SERVER_CPU" --root "$site" >"$work/app.log" 2>&1 &
    app_pid=$!
    sed "s|^access = \"\"|access = \"$work/access.log\"|" config/percore.toml >"$work/logged.toml"
    taskset -c "$SERVER_CPU" target/release/percore --config "$work/logged.toml" \
        --port "$LOGGED_PORT" --cores "$SERVER_CPU" --root "$site" >"$work/logged.log" 2>&1 &
    logged_pid=$!
    local ports="$PERCORE_PORT $NGINX_PORT $QUIET_PORT $FLOOR_PORT $APP_PORT $LOGGED_PORT"
    if [ -n "$BASELINE" ]; then
        taskset -c "$SERVER_CPU" "$BASELINE" --config config/percore.toml \
            --port "$BASELINE_PORT" --cores "$SERVER_CPU" --root "$site" \
            --tls-port "$BASELINE_TLS_PORT" --tls-cert "$tls_dir/cert.pem" --tls-key "$tls_dir/key.pem" \
            >"$work/baseline.log" 2>&1 &
        baseline_pid=$!
        ports="$ports $BASELINE_PORT"
    fi
    for port in $ports; do
        await_echo "$port"
    done
    local tls_ports="$PERCORE_TLS_PORT $NGINX_TLS_PORT"
    [ -n "$BASELINE" ] && tls_ports="$tls_ports $BASELINE_TLS_PORT"
    for port in $tls_ports; do
        for _ in $(seq 100); do
            curl -sf --cacert "$tls_dir/cert.pem" "https://localhost:$port$URL_PATH" >/dev/null 2>&1 && break
            sleep 0.1
        done
        curl -sf --cacert "$tls_dir/cert.pem" "https://localhost:$port$URL_PATH" | grep -q 'Hi, Abcde!' || {
            echo "TLS server on port $port is not answering; logs in $work" >&2
            cat "$work"/*.log >&2
            exit 1
        }
    done
}
stop_servers() {
    [ -n "$percore_pid" ] && kill -INT "$percore_pid" 2>/dev/null && wait "$percore_pid" 2>/dev/null
    [ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
    [ -n "$quiet_pid" ] && kill -INT "$quiet_pid" 2>/dev/null && wait "$quiet_pid" 2>/dev/null
    # The bare loop has no signal handling: SIGTERM's default action ends it.
    if [ -n "$floor_pid" ]; then
        kill -TERM "$floor_pid" 2>/dev/null
        wait "$floor_pid" 2>/dev/null || true
    fi
    for pid in "$app_pid" "$baseline_pid" "$logged_pid" "${proxy_pid:-}" "${backend_pid:-}" \
        "${fanout_pid:-}"; do
        [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    # HAProxy stops at once on SIGTERM, and the bare relay has no signal handling.
    for pid in "${haproxy_pid:-}" "${relay_pid:-}" "${ws_anchor_pid:-}" "${ws_fast_pid:-}" \
        "${ws_big_pid:-}"; do
        [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && { wait "$pid" 2>/dev/null || true; }
    done
    proxy_pid=""
    backend_pid=""
    haproxy_pid=
    relay_pid=""
    ws_anchor_pid=""
    ws_fast_pid=""
    percore_pid=""
    nginx_pid=""
    quiet_pid=""
    floor_pid=""
    app_pid=""
    baseline_pid=""
    logged_pid=""
    return 0
}

# start_proxies CONFIG ROOT [BINARY]: the proxy rows' backend (BINARY, target/release/percore
# unless given, with CONFIG and --root ROOT, "" for no files) on the load's core, and in front
# of it on core $SERVER_CPU percore --proxy, HAProxy and the bare relay (nginx's proxy_pass
# server is part of the nginx that start_servers runs); waits for each to answer /echo.
start_proxies() {
    local config=$1 root=$2 binary=${3:-target/release/percore}
    command -v haproxy >/dev/null 2>&1 || { echo "proxy: install haproxy (apt-get install haproxy)" >&2; exit 1; }
    # The backend shares the load's core: what each proxy costs is core $SERVER_CPU's
    # time alone.
    taskset -c "$CLIENT_CPU" "$binary" --config "$config" \
        --port "$BACKEND_PORT" --cores "$CLIENT_CPU" --root "$root" >"$work/backend.log" 2>&1 &
    backend_pid=$!
    # keepalive 64 on both percore and nginx (benches/nginx.conf): 50 clients keep up to
    # 50 upstream requests under way, and a pool smaller than that closes and opens
    # connections all run long.
    { cat config/percore.toml
      printf '\n[[upstream]]\nname = "backend"\nservers = ["127.0.0.1:%s"]\nkeepalive = 64\n' "$BACKEND_PORT"
      printf '\n[[proxy]]\npath = "/"\nupstream = "backend"\n'
    } >"$work/proxy.toml"
    taskset -c "$SERVER_CPU" target/release/percore --config "$work/proxy.toml" \
        --port "$PROXY_PORT" --cores "$SERVER_CPU" --root "" >"$work/proxy.log" 2>&1 &
    proxy_pid=$!
    cat >"$work/haproxy.cfg" <<HAPROXY
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    http-reuse safe
frontend echo
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend echo
backend echo
    server backend 127.0.0.1:$BACKEND_PORT
HAPROXY
    taskset -c "$SERVER_CPU" haproxy -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
    haproxy_pid=$!
    taskset -c "$SERVER_CPU" "$relay_floor" "$RELAY_PORT" "127.0.0.1:$BACKEND_PORT" \
        >"$work/relay.log" 2>&1 &
    relay_pid=$!
    for port in $BACKEND_PORT $PROXY_PORT $NGINX_PROXY_PORT $HAPROXY_PORT $RELAY_PORT; do
        await_echo "$port"
    done
}
# stop_proxies: stops what start_proxies started (nginx goes on).
stop_proxies() {
    kill -INT "$proxy_pid" "$backend_pid" 2>/dev/null || true
    kill -TERM "$haproxy_pid" "$relay_pid" 2>/dev/null || true
    wait "$proxy_pid" "$backend_pid" "$haproxy_pid" "$relay_pid" 2>/dev/null || true
    proxy_pid=""
    backend_pid=""
    haproxy_pid=""
    relay_pid=""
}

core_busy() { # busy ticks of $SERVER_CPU
    awk -v c="cpu$SERVER_CPU" '$1 == c { print $2 + $3 + $4 + $7 + $8 }' /proc/stat
}
hz=$(getconf CLK_TCK)

# run_load PORT WORKLOAD -> prints "reqs rps core_us"
run_load() {
    local port=$1 workload=$2 out="$work/out"
    local url="http://127.0.0.1:$port$URL_PATH"
    case $workload in
        file-4k) url="http://127.0.0.1:$port/4k.bin" ;;
        file-64k) url="http://127.0.0.1:$port/64k.bin" ;;
        file-1m) url="http://127.0.0.1:$port/1m.bin" ;;
        tls-file-1m) url="https://127.0.0.1:$port/1m.bin" ;;
        page-pre-gz) url="http://127.0.0.1:$port/pre.html" ;;
        large-*) url="http://127.0.0.1:$port/large.html" ;;
        page-*) url="http://127.0.0.1:$port/page.html" ;;
        tls-*) url="https://127.0.0.1:$port$URL_PATH" ;;
    esac
    local core0 core1 reqs rps
    core0=$(core_busy)
    case $workload in
        ab-k-50) taskset -c "$CLIENT_CPU" ab -q -k -c 50 -n "$N" "$url" >"$out" 2>&1 ;;
        ab-k-500) taskset -c "$CLIENT_CPU" ab -q -k -c 500 -n "$N" "$url" >"$out" 2>&1 ;;
        ab-close-50) taskset -c "$CLIENT_CPU" ab -q -c 50 -n "$N_CLOSE" "$url" >"$out" 2>&1 ;;
        post-1k) taskset -c "$CLIENT_CPU" ab -q -k -c 50 -n "$N" -p "$work/1k.txt" \
            -T text/plain "http://127.0.0.1:$port/upper" >"$out" 2>&1 ;;
        post-64k) taskset -c "$CLIENT_CPU" ab -q -k -c 50 -n "$N_POST" -p "$work/64k.txt" \
            -T text/plain "http://127.0.0.1:$port/upper" >"$out" 2>&1 ;;
        wrk-50) taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d"${DURATION}s" \
            -s benches/keepalive.lua "$url" >"$out" 2>&1 ;;
        wrk-pipe-16) taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d"${DURATION}s" \
            -s benches/pipeline.lua "$url" >"$out" 2>&1 ;;
        file-* | tls-wrk-50 | tls-file-1m) taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d"${DURATION}s" \
            -s benches/keepalive.lua "$url" >"$out" 2>&1 ;;
        tls-wrk-pipe-16) taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d"${DURATION}s" \
            -s benches/pipeline.lua "$url" >"$out" 2>&1 ;;
        page-* | large-*)
            # The coding the row asks for (none: identity), through benches/coded.lua.
            local coding=${workload#*-}
            case $coding in
                identity) coding=identity ;;
                pre-gz) coding=gzip ;;
            esac
            ACCEPT_ENCODING=$coding taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d"${DURATION}s" \
                -s benches/coded.lua "$url" >"$out" 2>&1 ;;
        tls-ab-close-50) taskset -c "$CLIENT_CPU" ab -q -c 50 -n "$N_TLS_CLOSE" "$url" >"$out" 2>&1 ;;
        tls-resume) taskset -c "$CLIENT_CPU" "$tls_resume" "127.0.0.1:$port" "$tls_dir/cert.pem" \
            "$N_RESUME" 8 >"$out" 2>&1 ;;
    esac
    core1=$(core_busy)
    case $workload in
        ab-* | post-* | tls-ab-*)
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
        tls-resume)
            reqs=$(awk '/connections,/ { print $1 }' "$out")
            rps=$(awk '/connections,/ { print $(NF-2) }' "$out")
            grep "resumed" "$out" | sed "s/^/  resumption on port $port: /" >&2
            ;;
        wrk-* | file-* | tls-wrk-* | tls-file-* | page-* | large-*)
            if grep -q "Non-2xx\|Socket errors" "$out"; then
                echo "$workload on port $port reported errors:" >&2
                cat "$out" >&2
                exit 1
            fi
            reqs=$(awk '/requests in/ { print $1 }' "$out")
            rps=$(awk '/^Requests\/sec/ { print $2 }' "$out")
            ;;
    esac
    awk -v r="$reqs" -v s="$rps" -v c=$((core1 - core0)) -v hz="$hz" \
        'BEGIN { printf "%d %.0f %.3f\n", r, s, c * 1e6 / hz / r }'
}

# idle_rss PID PORT [tls] -> "B/conn before_KiB after_KiB": RSS per idle keep-alive
# connection, after a warm-up (an ab -k run, which touches the server's buffers and pools).
idle_rss() {
    local pid=$1 port=$2 tls=${3:-} ws=${4:-} before after fifo="$work/idle.fifo" count=$IDLE
    local scheme=http extra=()
    if [ -n "$tls" ]; then
        scheme=https
        count=$TLS_IDLE
        extra=(--tls "$tls_dir/cert.pem")
    fi
    [ -n "$ws" ] && extra+=(--ws "$ws")
    taskset -c "$CLIENT_CPU" ab -q -k -c 50 -n 50000 "$scheme://127.0.0.1:$port$URL_PATH" \
        >/dev/null 2>&1
    sleep 1
    before=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
    rm -f "$fifo"
    mkfifo "$fifo"
    taskset -c "$CLIENT_CPU" cargo bench --quiet --bench idle_connections -- \
        "127.0.0.1:$port" "$count" "${extra[@]}" <"$fifo" >"$work/idle.out" 2>&1 &
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
    awk -v b="$before" -v a="$after" -v n="$count" \
        'BEGIN { printf "%.0f %d %d\n", (a - b) * 1024 / n, b, a }'
}

# syscalls PID PORT [SCHEME] -> "socket_calls_per_request io_uring_enter_per_request":
# strace -c on the server (all threads) during an ab -k -c 50 run; io_uring_enter and the
# futex and membarrier calls of thread bookkeeping are not socket calls.
syscalls() {
    local pid=$1 port=$2 scheme=${3:-http}
    strace -q -c -f -p "$pid" -o "$work/strace" 2>/dev/null &
    local tracer=$!
    sleep 1
    taskset -c "$CLIENT_CPU" ab -q -k -c 50 -n "$N_STRACE" "$scheme://127.0.0.1:$port$URL_PATH" \
        >"$work/out" 2>&1
    kill -INT $tracer
    wait $tracer 2>/dev/null || true
    awk -v n="$N_STRACE" '
        $1 ~ /^[0-9.]+$/ && $4 ~ /^[0-9]+$/ {
            if ($NF == "io_uring_enter") enter = $4
            else if ($NF !~ /^(futex|membarrier|total)$/) calls += $4
        }
        END { printf "%.3f %.3f\n", calls / n, enter / n }' "$work/strace"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

start_servers
echo "percore vs nginx vs the bare io_uring loop: server on cpu $SERVER_CPU, load on cpu $CLIENT_CPU, $REPS repetitions, medians"
echo "$(date -u +%Y-%m-%d) $(uname -r) $(nproc) cpus, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
echo
printf '| %-12s | %11s | %11s | %11s | %10s | %10s | %10s | %7s | %7s |\n' \
    workload "percore r/s" "nginx r/s" "floor r/s" "percore µs" "nginx µs" "floor µs" "÷nginx" "÷floor"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"

# compare LABEL WORKLOAD PORT[:WORKLOAD]... : interleaved runs on each port (with its own
# workload where one is given), one row of medians (µs: core time per request; ÷nginx and
# ÷floor: the first server's µs over the others').
compare() {
    local label=$1 workload=$2
    shift 2
    local ports=("$@") i
    for i in "${!ports[@]}"; do : >"$work/r$i"; done
    for _ in $(seq "$REPS"); do
        for i in "${!ports[@]}"; do
            local port=${ports[$i]%%:*} load=$workload
            [[ ${ports[$i]} == *:* ]] && load=${ports[$i]#*:}
            run_load "$port" "$load" >>"$work/r$i"
        done
    done
    local rps=() us=()
    for i in 0 1 2; do
        if [ -n "${ports[$i]:-}" ]; then
            rps[i]=$(cut -d' ' -f2 "$work/r$i" | median)
            us[i]=$(cut -d' ' -f3 "$work/r$i" | median)
        else
            rps[i]=-
            us[i]=-
        fi
    done
    awk -v w="$label" -v r0="${rps[0]}" -v r1="${rps[1]}" -v r2="${rps[2]}" \
        -v u0="${us[0]}" -v u1="${us[1]}" -v u2="${us[2]}" 'BEGIN {
        n = (r2 == "-") ? "—" : sprintf("%.0f", r2)
        f = (u2 == "-") ? "—" : sprintf("%.2f", u2)
        rf = (u2 == "-") ? "—" : sprintf("%.2f", u0 / u2)
        printf "| %-12s | %11.0f | %11.0f | %11s | %10.2f | %10.2f | %10s | %7.2f | %7s |\n",
            w, r0, r1, n, u0, u1, f, u0 / u1, rf }'
    # Every run's µs on stderr, in the order run, for the ranges a near-target ratio needs.
    for i in "${!ports[@]}"; do
        echo "  $label, server $((i + 1)) of ${#ports[@]}, µs per run: $(cut -d' ' -f3 "$work/r$i" | tr '\n' ' ')" >&2
    done
}

for workload in $WORKLOADS; do
    case $workload in
        idle)
            # Fresh processes: memory freed by earlier runs would hide the cost of new
            # connections; each gets the same warm-up first.
            stop_servers
            start_servers
            p=$(idle_rss "$percore_pid" $PERCORE_PORT)
            n=$(idle_rss "$nginx_pid" $NGINX_PORT)
            f=$(idle_rss "$floor_pid" $FLOOR_PORT)
            echo "| idle $IDLE: RSS B per connection | percore $(echo "$p" | cut -d' ' -f1) | nginx $(echo "$n" | cut -d' ' -f1) | floor $(echo "$f" | cut -d' ' -f1) | (RSS KiB before→after: percore $(echo "$p" | cut -d' ' -f2)→$(echo "$p" | cut -d' ' -f3), nginx $(echo "$n" | cut -d' ' -f2)→$(echo "$n" | cut -d' ' -f3), floor $(echo "$f" | cut -d' ' -f2)→$(echo "$f" | cut -d' ' -f3)) | | | | |"
            ;;
        ws-idle)
            # Idle WebSockets (one message echoed on each, then held): cleartext and TLS.
            stop_servers
            start_servers
            p=$(idle_rss "$percore_pid" $PERCORE_PORT "" /ws/echo)
            t=$(idle_rss "$percore_pid" $PERCORE_TLS_PORT tls /ws/echo)
            echo "| idle WebSockets: RSS B per connection | ws $IDLE: $(echo "$p" | cut -d' ' -f1) | wss $TLS_IDLE: $(echo "$t" | cut -d' ' -f1) | | (RSS KiB before→after: ws $(echo "$p" | cut -d' ' -f2)→$(echo "$p" | cut -d' ' -f3), wss $(echo "$t" | cut -d' ' -f2)→$(echo "$t" | cut -d' ' -f3)) | | | | |"
            ;;
        syscalls)
            p=$(syscalls "$percore_pid" $PERCORE_PORT)
            n=$(syscalls "$nginx_pid" $NGINX_PORT)
            f=$(syscalls "$floor_pid" $FLOOR_PORT)
            echo "| syscalls per request, ab -k -c 50 (socket calls; io_uring_enter) | percore $(echo "$p" | cut -d' ' -f1); $(echo "$p" | cut -d' ' -f2) | nginx $(echo "$n" | cut -d' ' -f1); $(echo "$n" | cut -d' ' -f2) | floor $(echo "$f" | cut -d' ' -f1); $(echo "$f" | cut -d' ' -f2) | | | | | |"
            ;;
        ws)
            # WebSocket echo: the binary's /ws/echo, tokio-tungstenite's and fastwebsockets'
            # echo servers (the anchors: benches/ws_anchor_*.rs), all on the server's CPU,
            # driven in turn by benches/ws_load.rs; then percore over TLS against itself.
            taskset -c "$SERVER_CPU" "$ws_anchor" "$WS_ANCHOR_PORT" >"$work/ws_anchor.log" 2>&1 &
            ws_anchor_pid=$!
            taskset -c "$SERVER_CPU" "$ws_fast" "$WS_FAST_PORT" >"$work/ws_fast.log" 2>&1 &
            ws_fast_pid=$!
            # percore again with 16 KiB receive buffers (256 of them: the same 4 MiB), for
            # the large-message row.
            sed 's/^recv_buffer_bytes = .*/recv_buffer_bytes = 16384/; s/^recv_buffers = .*/recv_buffers = 256/' \
                config/percore.toml >"$work/ws_big.toml"
            taskset -c "$SERVER_CPU" target/release/percore --config "$work/ws_big.toml" \
                --port "$WS_BIG_PORT" --cores "$SERVER_CPU" --root "" >"$work/ws_big.log" 2>&1 &
            ws_big_pid=$!
            await_echo "$WS_BIG_PORT"
            for log in ws_anchor ws_fast; do
                for _ in $(seq 100); do
                    grep -q "echo on" "$work/$log.log" 2>/dev/null && break
                    sleep 0.1
                done
            done
            echo
            echo "WebSocket echo on cpu $SERVER_CPU, benches/ws_load.rs on cpu $CLIENT_CPU: 100 connections, 4 messages in flight each, ${DURATION}s per run; r/s: messages echoed per second; µs: cpu $SERVER_CPU's time per echoed message. ws rows: percore's /ws/echo (first), tokio-tungstenite (second) and fastwebsockets (third), each on a single-threaded tokio runtime; ws-16k-rb16k: percore with 16 KiB receive buffers (runtime.recv_buffer_bytes; 4 KiB by default) against the same anchors; wss rows: percore over TLS (first) and over cleartext (second); the deflate row is percore's alone (neither anchor has permessage-deflate)"
            for row in "ws-512:512 text:plain tung fast" "ws-16k:16384 binary:plain tung fast" \
                "ws-16k-rb16k:16384 binary:big tung fast" \
                "wss-512:512 text:tls plain" "wss-16k:16384 binary:tls plain" \
                "ws-512-deflate:512 text deflate:plain"; do
                IFS=: read -r label load servers <<<"$row"
                read -r size kind extra <<<"$load"
                read -ra targets <<<"$servers"
                for i in "${!targets[@]}"; do : >"$work/ws$i"; done
                for _ in $(seq "$REPS"); do
                    for i in "${!targets[@]}"; do
                        case ${targets[$i]} in
                            plain) port=$PERCORE_PORT tls="" ;;
                            tls) port=$PERCORE_TLS_PORT tls=tls ;;
                            tung) port=$WS_ANCHOR_PORT tls="" ;;
                            fast) port=$WS_FAST_PORT tls="" ;;
                            big) port=$WS_BIG_PORT tls="" ;;
                        esac
                        c0=$(core_busy)
                        out=$(taskset -c "$CLIENT_CPU" "$ws_load" "127.0.0.1:$port" /ws/echo \
                            100 4 "$size" "$DURATION" "$kind" ${extra:+"$extra"} ${tls:+"$tls"})
                        c1=$(core_busy)
                        n=$(echo "$out" | awk '{ print $1 }')
                        awk -v n="$n" -v t=$((c1 - c0)) -v hz="$hz" -v d="$DURATION" \
                            'BEGIN { printf "%d %.0f %.2f\n", n, n / d, t * 1e6 / hz / n }' >>"$work/ws$i"
                    done
                done
                r=() u=() ratio=()
                for i in 0 1 2; do
                    if [ -n "${targets[$i]:-}" ]; then
                        r[i]=$(cut -d' ' -f2 "$work/ws$i" | median)
                        u[i]=$(cut -d' ' -f3 "$work/ws$i" | median)
                        ratio[i]=$(awk -v a="${u[0]}" -v b="${u[i]}" 'BEGIN { printf "%.2f", a / b }')
                    else
                        r[i]=— u[i]=— ratio[i]=—
                    fi
                done
                printf '| %-12s | %11s | %11s | %11s | %10s | %10s | %10s | %7s | %7s |\n' "$label" \
                    "${r[0]}" "${r[1]}" "${r[2]}" "${u[0]}" "${u[1]}" "${u[2]}" "${ratio[1]}" "${ratio[2]}"
                for i in "${!targets[@]}"; do
                    echo "  $label, ${targets[$i]}, µs per run: $(cut -d' ' -f3 "$work/ws$i" | tr '\n' ' ')" >&2
                done
            done
            for pid in "$ws_anchor_pid" "$ws_fast_pid" "$ws_big_pid"; do
                kill "$pid" 2>/dev/null || true
                wait "$pid" 2>/dev/null || true
            done
            ws_anchor_pid="" ws_fast_pid="" ws_big_pid=""
            ;;
        ws-syscalls)
            # Socket system calls per echoed WebSocket message (and io_uring_enter per
            # message), strace counting the percore process during one ws_load run.
            strace -q -c -f -p "$percore_pid" -o "$work/strace" 2>/dev/null &
            tracer=$!
            sleep 1
            out=$(taskset -c "$CLIENT_CPU" "$ws_load" "127.0.0.1:$PERCORE_PORT" /ws/echo 100 4 512 5 text)
            kill -INT $tracer
            wait $tracer 2>/dev/null || true
            n=$(echo "$out" | awk '{ print $1 }')
            awk -v n="$n" '
                $1 ~ /^[0-9.]+$/ && $4 ~ /^[0-9]+$/ {
                    if ($NF == "io_uring_enter") enter = $4
                    else if ($NF !~ /^(futex|membarrier|total)$/) calls += $4
                }
                END { printf "| ws syscalls per echoed message, 512 B, 100 connections (socket calls; io_uring_enter) | %.4f; %.4f | | | | | | | |\n", calls / n, enter / n }' "$work/strace"
            ;;
        ws-fanout)
            # One publish to a group of FANOUT members of the binary's /ws/room/{name}, on a
            # server of two cores (0 and 1: the members spread over both, and the client
            # shares them); benches/ws_fanout.rs holds the members and times each publish
            # until the last member has it.
            fanout=${FANOUT:-10000}
            target/release/percore --port "$FANOUT_PORT" --cores 0-1 --root "" \
                >"$work/fanout.log" 2>&1 &
            fanout_pid=$!
            await_echo "$FANOUT_PORT"
            echo
            echo "One publish to a group over two cores (benches/ws_fanout.rs, $fanout members, 30 publishes per size; server cpu: both cores' time per publish, which holds the loopback's delivery to the members):"
            for size in 64 1024; do
                echo "  $("$ws_fanout" "127.0.0.1:$FANOUT_PORT" "$fanout_pid" "$fanout" 30 "$size")"
            done
            kill -INT "$fanout_pid" 2>/dev/null && wait "$fanout_pid" 2>/dev/null || true
            fanout_pid=""
            ;;
        report-cost)
            echo
            echo "Reporting cost, ab -k -c 50: percore with reports (first) vs report.enabled = false (second)"
            compare "reports on/off" ab-k-50 $PERCORE_PORT $QUIET_PORT
            ;;
        post-1k)
            echo
            echo "A library handler (benches/app_server.rs) reading a 1 KiB POST body and answering it upper-cased (first), vs GET /echo on the same server (second), ab -k -c 50"
            compare "post-1k" post-1k $APP_PORT "$APP_PORT:ab-k-50"
            ;;
        access-log)
            echo
            echo "Access log on (first; combined format, $work/access.log) vs off (second), ab -k -c 50"
            compare "access log" ab-k-50 $LOGGED_PORT $PERCORE_PORT
            ;;
        baseline)
            [ -n "$BASELINE" ] || { echo "baseline: set BASELINE=/path/to/percore" >&2; exit 1; }
            echo
            echo "This build (first) vs $BASELINE (second): ab -k -c 50, wrk -c 50 keep-alive and 16 pipelined, idle connections"
            compare "ab-k-50" ab-k-50 $PERCORE_PORT $BASELINE_PORT
            compare "wrk-50" wrk-50 $PERCORE_PORT $BASELINE_PORT
            compare "wrk-pipe-16" wrk-pipe-16 $PERCORE_PORT $BASELINE_PORT
            stop_servers
            start_servers
            p=$(idle_rss "$percore_pid" $PERCORE_PORT)
            b=$(idle_rss "$baseline_pid" $BASELINE_PORT)
            echo "| idle $IDLE: RSS B per connection | this build $(echo "$p" | cut -d' ' -f1) | baseline $(echo "$b" | cut -d' ' -f1) | | (RSS KiB before→after: this build $(echo "$p" | cut -d' ' -f2)→$(echo "$p" | cut -d' ' -f3), baseline $(echo "$b" | cut -d' ' -f2)→$(echo "$b" | cut -d' ' -f3)) | | | | |"
            ;;
        tls-baseline)
            [ -n "$BASELINE" ] || { echo "tls-baseline: set BASELINE=/path/to/percore" >&2; exit 1; }
            echo
            echo "This build (first) vs $BASELINE (second), over TLS: wrk -c 50 keep-alive and 16 pipelined, ab -c 50 a full handshake each, resumed handshakes, a 1 MiB file"
            sleep $((site_made + 3 > SECONDS ? site_made + 3 - SECONDS : 0))
            for w in tls-wrk-50 tls-wrk-pipe-16 tls-ab-close-50 tls-resume tls-file-1m; do
                compare "$w" "$w" $PERCORE_TLS_PORT $BASELINE_TLS_PORT
            done
            ;;
        tls-idle)
            stop_servers
            start_servers
            t=$(idle_rss "$percore_pid" $PERCORE_TLS_PORT tls)
            n=$(idle_rss "$nginx_pid" $NGINX_TLS_PORT tls)
            echo "| idle $TLS_IDLE TLS: RSS B per connection | percore $(echo "$t" | cut -d' ' -f1) | nginx $(echo "$n" | cut -d' ' -f1) | | (RSS KiB before→after: percore $(echo "$t" | cut -d' ' -f2)→$(echo "$t" | cut -d' ' -f3), nginx $(echo "$n" | cut -d' ' -f2)→$(echo "$n" | cut -d' ' -f3)) | | | | |"
            ;;
        tls-flood | tls-abuse)
            # p99 of TLS keep-alive requests (wrk's) with the core alone, then with a flood of
            # ClientHellos (tls-flood) or of clients misbehaving after their handshake
            # (tls-abuse: KeyUpdate requests within the limits, then past them; see
            # benches/tls_abuse.rs) on the same core meanwhile. Each measurement restarts the
            # servers, in this shell (not a subshell), so that the next stop_servers stops them.
            flood_p99() { # PORT no|flood|ABUSE-MODE: sets flood_result to "P99 WHAT-THE-FLOOD-DID"
                local port=$1 flood=$2 fpid="" did=-
                stop_servers
                start_servers
                case $flood in
                    no) ;;
                    flood)
                        taskset -c "$CLIENT_CPU" "$tls_flood" "127.0.0.1:$port" $((DURATION + 2)) 4 \
                            >"$work/flood.out" 2>&1 &
                        fpid=$! ;;
                    *)
                        taskset -c "$CLIENT_CPU" "$tls_abuse" "127.0.0.1:$port" $((DURATION + 2)) "$flood" 1 \
                            >"$work/flood.out" 2>&1 &
                        fpid=$! ;;
                esac
                [ -n "$fpid" ] && sleep 1
                taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d"${DURATION}s" --latency \
                    -s benches/keepalive.lua "https://127.0.0.1:$port$URL_PATH" >"$work/out" 2>&1
                if [ -n "$fpid" ]; then
                    wait "$fpid"
                    did=$(awk '{ print $1 }' "$work/flood.out")
                fi
                flood_result="$(awk '$1 == "99%" { print $2 }' "$work/out") $did"
            }
            if [ "$workload" = tls-flood ]; then
                flood_p99 $PERCORE_TLS_PORT no
                a=$flood_result
                flood_p99 $PERCORE_TLS_PORT flood
                f=$flood_result
                flood_p99 $NGINX_TLS_PORT no
                na=$flood_result
                flood_p99 $NGINX_TLS_PORT flood
                nf=$flood_result
                echo "| TLS keep-alive p99 (wrk), alone vs under a ClientHello flood | percore ${a%% *} vs ${f%% *} (${f##* } hellos answered) | nginx ${na%% *} vs ${nf%% *} (${nf##* } hellos) | | | | | | |"
            else
                # What each abuse costs the core alone (busy time per record it sent), then
                # wrk's p99 beside one abusing client.
                abuse_cost() { # MODE: sets abuse_result to "µs-per-record records-per-second ended µs-per-connection"
                    stop_servers
                    start_servers
                    local c0 c1
                    c0=$(core_busy)
                    taskset -c "$CLIENT_CPU" "$tls_abuse" "127.0.0.1:$PERCORE_TLS_PORT" "$DURATION" "$1" 2 \
                        >"$work/abuse.out" 2>&1
                    c1=$(core_busy)
                    abuse_result=$(awk -v b=$((c1 - c0)) -v hz="$hz" -v d="$DURATION" \
                        '{ e = $(NF - 5); printf "%.2f %.0f %d %s", b / hz * 1e6 / $1, $1 / d, e, (e > 0 ? sprintf("%.0f", b / hz * 1e6 / e) : "-") }' "$work/abuse.out")
                }
                flood_p99 $PERCORE_TLS_PORT no
                a=$flood_result
                for mode in keyupdates keyupdate-limit renegotiate; do
                    abuse_cost "$mode"
                    cost=$abuse_result
                    flood_p99 $PERCORE_TLS_PORT "$mode"
                    echo "| TLS abuse: $mode | core µs per record sent $(echo "$cost" | cut -d' ' -f1), per connection $(echo "$cost" | cut -d' ' -f4) ($(echo "$cost" | cut -d' ' -f2) records/s, $(echo "$cost" | cut -d' ' -f3) connections ended by percore) | wrk p99 ${flood_result%% *} beside one abusing client (${a%% *} alone) | | | | | | |"
                done
            fi
            ;;
        tls-syscalls)
            t=$(syscalls "$percore_pid" $PERCORE_TLS_PORT https)
            n=$(syscalls "$nginx_pid" $NGINX_TLS_PORT https)
            echo "| syscalls per TLS request, ab -k -c 50 (socket calls; io_uring_enter) | percore $(echo "$t" | cut -d' ' -f1); $(echo "$t" | cut -d' ' -f2) | nginx $(echo "$n" | cut -d' ' -f1); $(echo "$n" | cut -d' ' -f2) | | | | | |"
            ;;
        tls-*)
            if [ -z "${tls_header:-}" ]; then
                tls_header=1
                echo
                echo "HTTPS rows: percore over TLS (first columns), percore cleartext (second), nginx over TLS (third); ÷ columns: percore TLS's µs over each"
            fi
            case $workload in
                tls-wrk-50) plain=wrk-50 ;;
                tls-wrk-pipe-16) plain=wrk-pipe-16 ;;
                tls-ab-close-50 | tls-resume) plain=ab-close-50 ;;
                tls-file-1m) plain=file-1m ;;
            esac
            sleep $((site_made + 3 > SECONDS ? site_made + 3 - SECONDS : 0))
            compare "$workload" "$workload" $PERCORE_TLS_PORT "$PERCORE_PORT:$plain" $NGINX_TLS_PORT
            ;;
        file-*)
            # Files younger than 2 s are not cached (their times could hide a change).
            sleep $((site_made + 3 > SECONDS ? site_made + 3 - SECONDS : 0))
            compare "$workload" "$workload" $PERCORE_PORT $NGINX_PORT
            ;;
        compression)
            # percore per response (compression.cache_variants = false) at gzip level 1 and at
            # the default levels (gzip 6, zstd 3, Brotli 4), and cached at level 1; the main
            # percore (PERCORE_PORT) is the default: cached, level 6.
            # (From config/percore.toml, not quiet.toml: its sed turns every "enabled = true"
            # off, [compression]'s included.)
            sed 's/^cache_variants = true/cache_variants = false/' config/percore.toml >"$work/gzip6.toml"
            sed 's/^gzip_level = 6/gzip_level = 1/' "$work/gzip6.toml" >"$work/gzip1.toml"
            sed 's/^gzip_level = 6/gzip_level = 1/' config/percore.toml >"$work/gzip1-cached.toml"
            for made in gzip6 gzip1; do
                grep -q '^cache_variants = false$' "$work/$made.toml" || {
                    echo "compression: no compression.cache_variants line to set in config/percore.toml" >&2
                    exit 1
                }
            done
            for made in gzip1 gzip1-cached; do
                grep -q '^gzip_level = 1$' "$work/$made.toml" || {
                    echo "compression: no compression.gzip_level line to set in config/percore.toml" >&2
                    exit 1
                }
            done
            compression_pids=()
            for server in "gzip1:$GZIP1_PORT" "gzip6:$GZIP6_PORT" "gzip1-cached:$GZIP1_CACHED_PORT"; do
                taskset -c "$SERVER_CPU" target/release/percore --config "$work/${server%%:*}.toml" \
                    --port "${server#*:}" --cores "$SERVER_CPU" --root "$site" \
                    >"$work/${server%%:*}.log" 2>&1 &
                compression_pids+=($!)
            done
            for port in $GZIP1_PORT $GZIP6_PORT $GZIP1_CACHED_PORT $NGINX_GZIP1_PORT $NGINX_GZIP6_PORT; do
                await_echo "$port"
            done
            # Every server's coded page decodes to the page.
            for check in "$PERCORE_PORT gzip page" "$GZIP1_PORT gzip page" "$GZIP6_PORT gzip page" \
                "$GZIP6_PORT zstd page" "$GZIP6_PORT br page" "$GZIP1_CACHED_PORT gzip page" \
                "$NGINX_GZIP1_PORT gzip page" "$NGINX_GZIP6_PORT gzip page" "$PERCORE_PORT gzip pre" \
                "$NGINX_GZIP6_PORT gzip pre" "$GZIP1_CACHED_PORT gzip large" "$PERCORE_PORT gzip large" \
                "$PERCORE_PORT zstd large" "$NGINX_GZIP1_PORT gzip large" "$NGINX_GZIP6_PORT gzip large"; do
                read -r port coding page <<<"$check"
                curl -sf --compressed -H "Accept-Encoding: $coding" "http://127.0.0.1:$port/$page.html" |
                    cmp -s - "$site/$page.html" || {
                    echo "compression: /$page.html in $coding from port $port is not the page; logs in $work" >&2
                    exit 1
                }
            done
            # Files younger than 2 s are not cached (their times could hide a change).
            sleep $((site_made + 3 > SECONDS ? site_made + 3 - SECONDS : 0))
            echo
            echo "Compression on cpu $SERVER_CPU: a 64 KiB HTML page, wrk -c 50 keep-alive with Accept-Encoding, percore (first) vs nginx gzip on (second; gzip_comp_level as the row says, gzip_static on for pre.html); per-resp: percore compresses every response as nginx does (compression.cache_variants = false), cached: percore's default (made once per version of the file); zstd and br rows: percore alone, nginx's gzip 6 beside them for scale; pre-gz: pre.html.gz (gzip -9) beside the page, to be read against the identity row's percore µs"
            compare "html-identity" page-identity $PERCORE_PORT $NGINX_PORT
            compare "html-gzip-1 per-resp" page-gzip $GZIP1_PORT $NGINX_GZIP1_PORT
            compare "html-gzip-1 cached" page-gzip $GZIP1_CACHED_PORT $NGINX_GZIP1_PORT
            compare "html-gzip-6 per-resp" page-gzip $GZIP6_PORT $NGINX_GZIP6_PORT
            compare "html-gzip-6 cached" page-gzip $PERCORE_PORT $NGINX_GZIP6_PORT
            compare "html-pre-gz" page-pre-gz $PERCORE_PORT $NGINX_GZIP6_PORT
            compare "html-zstd-3 per-resp" page-zstd $GZIP6_PORT "$NGINX_GZIP6_PORT:page-gzip"
            compare "html-br-4 per-resp" page-br $GZIP6_PORT "$NGINX_GZIP6_PORT:page-gzip"
            compare "large-identity (1 MiB)" large-identity $PERCORE_PORT $NGINX_PORT
            compare "large-gzip-1 streamed" large-gzip $GZIP1_CACHED_PORT $NGINX_GZIP1_PORT
            compare "large-gzip-6 streamed" large-gzip $PERCORE_PORT $NGINX_GZIP6_PORT
            compare "large-zstd-3 streamed" large-zstd $PERCORE_PORT "$NGINX_GZIP6_PORT:large-gzip"
            # coded_size PORT CODING PAGE -> the body's bytes as sent.
            coded_size() {
                curl -sf -H "Accept-Encoding: $2" "http://127.0.0.1:$1/$3.html" | wc -c
            }
            # versus PERCORE NGINX -> both sizes and percore's difference from nginx's.
            versus() {
                awk -v p="$1" -v n="$2" 'BEGIN { printf "percore %d, nginx %d (%+.1f %%)", p, n, (p - n) * 100 / n }'
            }
            p1=$(coded_size $GZIP1_PORT gzip page)
            n1=$(coded_size $NGINX_GZIP1_PORT gzip page)
            p6=$(coded_size $GZIP6_PORT gzip page)
            n6=$(coded_size $NGINX_GZIP6_PORT gzip page)
            z3=$(coded_size $GZIP6_PORT zstd page)
            b4=$(coded_size $GZIP6_PORT br page)
            pre=$(coded_size $PERCORE_PORT gzip pre)
            l1=$(coded_size $GZIP1_CACHED_PORT gzip large)
            nl1=$(coded_size $NGINX_GZIP1_PORT gzip large)
            l6=$(coded_size $PERCORE_PORT gzip large)
            nl6=$(coded_size $NGINX_GZIP6_PORT gzip large)
            lz=$(coded_size $PERCORE_PORT zstd large)
            echo "| html sizes, bytes (target: percore within 2 % of nginx) | identity $(wc -c <"$site/page.html") | gzip-1 $(versus "$p1" "$n1") | gzip-6 $(versus "$p6" "$n6") | zstd-3 $z3 | br-4 $b4 | pre-gz (gzip -9) $pre | | |"
            echo "| large sizes, bytes | identity $(wc -c <"$site/large.html") | gzip-1 $(versus "$l1" "$nl1") | gzip-6 $(versus "$l6" "$nl6") | zstd-3 $lz | | | | |"
            for pid in "${compression_pids[@]}"; do
                kill -INT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
            done
            ;;
        proxy)
            start_proxies "$work/quiet.toml" ""
            echo
            echo "Reverse proxies on cpu $SERVER_CPU in front of one backend (percore /echo on cpu $CLIENT_CPU, beside the load): percore --proxy (first), nginx proxy_pass with a keepalive pool (second), HAProxy http-reuse safe (third; the ÷floor column is ÷HAProxy); µs: cpu $SERVER_CPU's time per proxied request"
            compare "proxy-ab-k-50" ab-k-50 $PROXY_PORT $NGINX_PROXY_PORT $HAPROXY_PORT
            compare "proxy-wrk-50" wrk-50 $PROXY_PORT $NGINX_PROXY_PORT $HAPROXY_PORT
            compare "proxy-pipe-16" wrk-pipe-16 $PROXY_PORT $NGINX_PROXY_PORT $HAPROXY_PORT
            c=$(curl -s "http://127.0.0.1:$PROXY_PORT/stats" | tr ',' '\n' | grep -o '"connects":[0-9]*' | head -1)
            echo "| proxy: upstream connections opened by percore over the proxy rows | ${c#*:} | | | | | | | |"
            echo
            echo "percore --proxy (first) vs the bare relay (second, benches/relay_floor.rs: one upstream connection per client, bytes copied both ways unparsed; the ÷nginx column is ÷relay), same backend; µs: cpu $SERVER_CPU's time per proxied request"
            compare "proxy-ab-k-50 vs relay" ab-k-50 $PROXY_PORT $RELAY_PORT
            compare "proxy-wrk-50 vs relay" wrk-50 $PROXY_PORT $RELAY_PORT
            compare "proxy-pipe-16 vs relay" wrk-pipe-16 $PROXY_PORT $RELAY_PORT
            stop_proxies
            ;;
        proxy-sizes)
            # Files served by the backend (percore, static files from $site), then a POST body
            # answered upper-cased by benches/app_server.rs (the percore binary takes no POST).
            start_proxies "$work/quiet.toml" "$site"
            # Each proxy passes every byte: the files as they are, the body upper-cased.
            for port in $PROXY_PORT $NGINX_PROXY_PORT $HAPROXY_PORT; do
                for f in 4k 64k 1m; do
                    curl -sf "http://127.0.0.1:$port/$f.bin" | cmp -s - "$site/$f.bin" || {
                        echo "proxy-sizes: /$f.bin through port $port is not the file; logs in $work" >&2
                        exit 1
                    }
                done
            done
            # Files younger than 2 s are not cached (their times could hide a change).
            sleep $((site_made + 3 > SECONDS ? site_made + 3 - SECONDS : 0))
            echo
            echo "Reverse proxies on cpu $SERVER_CPU, bigger messages: GETs of files of 4 KiB, 64 KiB and 1 MiB (wrk -c 50 keep-alive; backend percore --root on cpu $CLIENT_CPU) and 64 KiB POST bodies answered upper-cased (ab -k -c 50, $N_POST requests; backend benches/app_server.rs on cpu $CLIENT_CPU): percore --proxy (first), nginx proxy_pass (second), HAProxy (third; the ÷floor column is ÷HAProxy); µs: cpu $SERVER_CPU's time per proxied request"
            compare "proxy-4k" file-4k $PROXY_PORT $NGINX_PROXY_PORT $HAPROXY_PORT
            compare "proxy-64k" file-64k $PROXY_PORT $NGINX_PROXY_PORT $HAPROXY_PORT
            compare "proxy-1m" file-1m $PROXY_PORT $NGINX_PROXY_PORT $HAPROXY_PORT
            stop_proxies
            start_proxies "$work/quiet.toml" "$site" "$app_server"
            LC_ALL=C tr '[:lower:]' '[:upper:]' <"$work/64k.txt" >"$work/64k.upper"
            for port in $PROXY_PORT $NGINX_PROXY_PORT $HAPROXY_PORT; do
                curl -sf -H 'Expect:' -H 'Content-Type: text/plain' --data-binary @"$work/64k.txt" \
                    "http://127.0.0.1:$port/upper" | cmp -s - "$work/64k.upper" || {
                    echo "proxy-sizes: POST /upper through port $port did not answer the body upper-cased" >&2
                    exit 1
                }
            done
            compare "proxy-post-64k" post-64k $PROXY_PORT $NGINX_PROXY_PORT $HAPROXY_PORT
            stop_proxies
            ;;
        proxy-idle-close)
            # The backend closes keep-alive connections idle for 100 ms, so the proxies' pooled
            # connections go stale while they wait; a proxy that sends a request on one the
            # backend is closing must retry it, not answer the client with an error.
            sed 's/^keepalive_timeout_ms = .*/keepalive_timeout_ms = 100/' "$work/quiet.toml" >"$work/idle-close.toml"
            [ "$(grep -c '^keepalive_timeout_ms = 100$' "$work/idle-close.toml")" = 1 ] || {
                echo "proxy-idle-close: no http.keepalive_timeout_ms line to set in config/percore.toml" >&2
                exit 1
            }
            start_proxies "$work/idle-close.toml" ""
            upstream_counts() { # -> "connects retries" of percore's proxy so far
                curl -s "http://127.0.0.1:$PROXY_PORT/stats" | tr ',' '\n' |
                    awk -F: '/"connects":/ && !c { c = $NF } /"retries":/ && !r { r = $NF } END { print c + 0, r + 0 }'
            }
            # wrk_failures PORT -> "failed non2xx socket_errors requests" of one wrk -c 50 run.
            wrk_failures() {
                taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d"${IDLE_CLOSE_DURATION}s" \
                    -s benches/keepalive.lua "http://127.0.0.1:$1$URL_PATH" >"$work/out" 2>&1 || true
                awk '/requests in/ { r = $1 }
                     /Non-2xx or 3xx responses:/ { n = $NF }
                     /Socket errors:/ { gsub(",", ""); s = $4 + $6 + $8 + $10 }
                     END { printf "%d %d %d %d\n", n + s, n, s, r }' "$work/out"
            }
            before=$(upstream_counts)
            p=$(wrk_failures $PROXY_PORT)
            after=$(upstream_counts)
            n=$(wrk_failures $NGINX_PROXY_PORT)
            h=$(wrk_failures $HAPROXY_PORT)
            stop_proxies
            read -r p_all p_non p_sock p_reqs <<<"$p"
            read -r n_all n_non n_sock n_reqs <<<"$n"
            read -r h_all h_non h_sock h_reqs <<<"$h"
            read -r c0 t0 <<<"$before"
            read -r c1 t1 <<<"$after"
            echo
            echo "| proxy-idle-close: failed requests (non-2xx + socket errors; target 0), wrk -c 50 -d ${IDLE_CLOSE_DURATION}s keep-alive, backend closing connections idle for 100 ms | percore $p_all (non-2xx $p_non, socket errors $p_sock, of $p_reqs; $((c1 - c0)) upstream connections opened, $((t1 - t0)) retries) | nginx $n_all (non-2xx $n_non, socket errors $n_sock, of $n_reqs) | HAProxy $h_all (non-2xx $h_non, socket errors $h_sock, of $h_reqs) | | | | | |"
            ;;
        *) compare "$workload" "$workload" $PERCORE_PORT $NGINX_PORT $FLOOR_PORT ;;
    esac
done
echo
echo "floor: the bare io_uring loop ($FLOOR_SRC), which counts requests, parses nothing else and serves no files."
echo "file-4k, file-1m: wrk -c 50 keep-alive GETs of a 4 KiB and a 1 MiB file (nginx: sendfile)."
echo "relay: the bare io_uring relay (benches/relay_floor.rs), one upstream connection per client, bytes copied unparsed."
echo "r/s: requests per second; µs: server core busy time per request (/proc/stat);"
echo "÷nginx, ÷floor: percore's core time per request over nginx's and the bare loop's."
