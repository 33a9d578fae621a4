#!/usr/bin/env bash
# benches/load/callgrind.sh — instructions per proxied request, gatehouse vs
# the hyper floor (examples/floor_proxy.rs), counted by valgrind's callgrind.
# Instruction counts do not drift with the other tenants of a shared machine
# the way times do: use this to tell whether a hot-path change helped, then
# confirm with run.sh. User space only (the kernel's share is not counted).
#
#   benches/load/callgrind.sh            4,000 requests over 8 connections
#   REQUESTS=10000 benches/load/callgrind.sh
#   PROTO=h2 benches/load/callgrind.sh   the same over HTTP/2 (8 connections,
#                                        one stream at a time each)
#   GATEHOUSE_BIN=/tmp/old/gatehouse NO_BUILD=1 benches/load/callgrind.sh
#                                        another build (an older tree's),
#                                        to compare two in one sitting
#
# Prints one line per proxy and keeps the callgrind files in a temporary
# folder for `callgrind_annotate --inclusive=yes FILE`.
set -euo pipefail

LOAD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LOAD_DIR/../.." && pwd)
REQUESTS=${REQUESTS:-4000}
case ${PROTO:-h1} in
    h1) PROTO_ARGS=(--h1) ;;
    h2) PROTO_ARGS=(-m 1) ;;
    *) echo "PROTO is h1 or h2" >&2; exit 2 ;;
esac
GH=${GATEHOUSE_BIN:-$ROOT/target/release/gatehouse}
FLOOR="$ROOT/target/release/examples/floor_proxy"

need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v nginx >/dev/null || need+=(nginx-light)
command -v h2load >/dev/null || need+=(nghttp2-client)
if ((${#need[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -n "${NO_BUILD:-}" ] || (cd "$ROOT" && cargo build --release --quiet --bin gatehouse --example floor_proxy)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-callgrind.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
echo 'users: []' >"$WORK/users.yaml"
JWT_SECRET=$(sed -n 's/^ *secret: *"\(.*\)".*/\1/p' "$LOAD_DIR/gatehouse.yaml")
TOKEN=$(JWT_SECRET=$JWT_SECRET python3 - <<'PY'
import base64, hashlib, hmac, json, os, time
def b64(raw): return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
now = int(time.time())
claims = {"iss": "gatehouse", "aud": "gatehouse", "sub": "bench-user", "roles": ["user"],
          "iat": now, "exp": now + 86400, "typ": "access", "jti": "callgrind", "sid": "callgrind"}
signing = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims, separators=(",", ":")).encode())
sig = hmac.new(os.environ["JWT_SECRET"].encode(), signing.encode(), hashlib.sha256).digest()
print(signing + "." + b64(sig))
PY
)
read -r BACKEND_PORT GH_PORT GH_ADMIN FLOOR_PORT < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(4)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')
sed -e "s|@WORK@|$WORK|g" -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" "$LOAD_DIR/nginx-backend.conf" >"$WORK/backend.conf"
nginx -e "$WORK/backend.err" -c "$WORK/backend.conf" -g 'daemon off;' >/dev/null 2>&1 &
PIDS+=($!)

env RUST_LOG=warn GH_INSTANCE=cg GH_HTTPS_PORT="$GH_PORT" GH_ADMIN_PORT="$GH_ADMIN" LOAD_WORK="$WORK" \
    BACKEND_PORT="$BACKEND_PORT" valgrind --tool=callgrind --callgrind-out-file="$WORK/gatehouse.cg" \
    "$GH" --config "$LOAD_DIR/gatehouse.yaml" >"$WORK/gatehouse.log" 2>&1 &
PIDS+=($!)
valgrind --tool=callgrind --callgrind-out-file="$WORK/floor.cg" \
    "$FLOOR" "127.0.0.1:$FLOOR_PORT" "$WORK/cert.pem" "$WORK/key.pem" "127.0.0.1:$BACKEND_PORT" \
    >"$WORK/floor.log" 2>&1 &
PIDS+=($!)

measure() { # measure NAME PORT: warm up, zero the counters, run REQUESTS, dump
    local name=$1 port=$2 pid=$3 i
    for i in $(seq 120); do
        curl -sk -o /dev/null -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$port/bench/x" && break
        sleep 0.5
    done
    h2load "${PROTO_ARGS[@]}" -n 500 -c 8 -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$port/bench/x" >/dev/null
    callgrind_control -z "$pid" >/dev/null
    h2load "${PROTO_ARGS[@]}" -n "$REQUESTS" -c 8 -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$port/bench/x" \
        >"$WORK/$name.h2load"
    grep -q "$REQUESTS succeeded" "$WORK/$name.h2load" || { echo "$name: requests failed" >&2; exit 1; }
    callgrind_control -d "$pid" >/dev/null
    sleep 1
    local file
    file=$(ls -t "$WORK/$name.cg".* | head -1)
    callgrind_annotate "$file" 2>/dev/null | awk -v n="$REQUESTS" -v name="$name" -v f="$file" -v proto="${PROTO:-h1}" \
        '/PROGRAM TOTALS/ {gsub(",", "", $1); printf "%-9s %s %8.0f instructions per request   (%s)\n", name, proto, $1 / n, f}'
}
measure gatehouse "$GH_PORT" "${PIDS[1]}"
measure floor "$FLOOR_PORT" "${PIDS[2]}"
echo "(the floor is tokio + rustls + hyper forwarding with no auth; files kept in $WORK)"
