#!/usr/bin/env bash
# Runs the Autobahn|Testsuite's fuzzing client (crossbario's autobahn-testsuite, from PyPI)
# against percore's /ws/echo on the default configuration, and fails unless every case
# passes (OK, or NON-STRICT and INFORMATIONAL as the suite allows).
#
#   tests/autobahn.sh                 cases 1-7, 9, 10, 12, 13 over ws://
#   tests/autobahn.sh --tls           the same over wss:// (a throwaway certificate)
#   CASES='["12.*"]' tests/autobahn.sh
#
# The suite is a Python 2.7 program: the script uses python2.7 from PATH, or $PYTHON2, or
# pyenv's 2.7; Debian 12 packages no Python 2, so this is not part of `cargo test` (which must
# run on a clean Debian machine) but a check run by hand, whose figures the README gives.
# Reports (HTML and JSON, one per case) are left in target/autobahn/reports.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$root/target/autobahn
tls=0
[ "${1:-}" = "--tls" ] && tls=1
cases=${CASES:-'["1.*","2.*","3.*","4.*","5.*","6.*","7.*","9.*","10.*","12.*","13.*"]'}

python2=${PYTHON2:-}
if [ -z "$python2" ]; then
    for candidate in python2.7 python2 "$(pyenv root 2>/dev/null)"/versions/2.7*/bin/python2.7; do
        if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[0] == 2' 2>/dev/null; then
            python2=$candidate
            break
        fi
    done
fi
if [ -z "$python2" ]; then
    echo "autobahn: no Python 2.7 found (set PYTHON2); the suite cannot run" >&2
    exit 2
fi

mkdir -p "$work"
if [ ! -x "$work/venv/bin/wstest" ]; then
    "$python2" -m virtualenv --version >/dev/null 2>&1 || "$python2" -m pip install --user virtualenv
    "$python2" -m virtualenv "$work/venv"
    "$work/venv/bin/pip" install 'autobahntestsuite==25.10.1'
fi

cargo build --release --bin percore
args=(--config config/percore.toml --port 0)
scheme=ws
if [ $tls = 1 ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
    args+=(--tls-port 0 --tls-cert "$work/cert.pem" --tls-key "$work/key.pem")
    scheme=wss
fi
log=$work/server.log
target/release/percore "${args[@]}" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT

# The listening line names the ports the kernel chose; wait for it, at most 10 s.
url=
for _ in $(seq 100); do
    if [ $tls = 1 ]; then
        url=$(grep -o 'https://127.0.0.1:[0-9]*' "$log" | head -1 | sed 's|https|wss|') || true
    else
        url=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1 | sed 's|http|ws|') || true
    fi
    [ -n "$url" ] && break
    kill -0 $server 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$url" ] || { echo "autobahn: percore did not say where it listens" >&2; cat "$log" >&2; exit 1; }

rm -rf "$work/reports"
cat >"$work/spec.json" <<EOF
{
  "outdir": "$work/reports",
  "servers": [{"agent": "percore", "url": "$url/ws/echo"}],
  "cases": $cases,
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
EOF
echo "autobahn: $url/ws/echo, cases $cases ($scheme)"
(cd "$work" && venv/bin/wstest -m fuzzingclient -s spec.json >wstest.log 2>&1)

python3 - "$work/reports/index.json" <<'EOF'
import collections, json, sys
passing = {"OK", "NON-STRICT", "INFORMATIONAL"}
cases = json.load(open(sys.argv[1]))["percore"]
order = lambda case: [int(part) for part in case.split(".")]
behaviour = collections.Counter(c["behavior"] for c in cases.values())
closing = collections.Counter(c["behaviorClose"] for c in cases.values())
print("autobahn: %d cases; behaviour %s; closing %s" % (len(cases), dict(behaviour), dict(closing)))
failed = [k for k in sorted(cases, key=order)
          if cases[k]["behavior"] not in passing or cases[k]["behaviorClose"] not in passing]
for case in failed:
    print("  FAILED %s: %s / %s" % (case, cases[case]["behavior"], cases[case]["behaviorClose"]))
sys.exit(1 if failed or not cases else 0)
EOF
