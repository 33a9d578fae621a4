#!/usr/bin/env bash
# benches/soak/run.sh — issue 16's soak: minutes of mixed load through one
# gatehouse in front of the example FastAPI chatbot (examples/chatbot/app.py
# under uvicorn), watching gatehouse's memory, descriptors and open
# connections. Not part of the test command in full; `scripts/test` runs a
# 60-second version against the debug build.
#
#   benches/soak/run.sh            10 minutes (+ cargo build --release)
#   benches/soak/run.sh 60         one minute
#
# The load generator is examples/soak.rs: proxied JWT and API-key requests
# (HTTP/2 and HTTP/1.1), logins, refreshes and logouts, long SSE streams,
# WebSockets, oversized bodies, 401s, 429s, CORS preflights and browser-
# session requests. It prints the answers by kind and status (every status
# must be one its kind asked for), p50/p99 per minute, RSS at minute 2 vs the
# end (within 10 %), descriptors after the load (back to their baseline), and
# exits non-zero when any of these fails. This script fails too when
# gatehouse's log holds a panic or gatehouse does not stop cleanly on SIGTERM.
#
# Knobs (environment):
#   SOAK_PROFILE=release   the build to run: release or debug (target/<profile>/)
#   BUILD=0                skip `cargo build` (use the binaries as they are)
#   RATE=1                 multiplies the load (1: about 70 requests a second
#                          plus 3 event streams and 2 WebSockets open)
#   SETTLE=30              seconds for descriptors and connections to come back
#   GATEHOUSE_TEST_VENV    the chatbot's virtualenv (default target/venv, made
#                          by scripts/test)
#   KEEP_WORK=1            keep the temporary folder (config, logs, report)
#
# Everything listens on 127.0.0.1 on free ports and is stopped by PID at exit,
# also on failure or Ctrl-C. Secrets (the user's password, the API key) are
# made fresh for the run and handed to the generator in its environment.
set -euo pipefail

SOAK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SOAK_DIR/../.." && pwd)
DURATION=${1:-600}
PROFILE=${SOAK_PROFILE:-release}
RATE=${RATE:-1}
SETTLE=${SETTLE:-30}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
GH="$TARGET/$PROFILE/gatehouse"
GEN="$TARGET/$PROFILE/examples/soak"
VENV=${GATEHOUSE_TEST_VENV:-$ROOT/target/venv}
PY="$VENV/bin/python"
SCRIPT_START=$(date +%s)

log() { printf '[soak %4ds] %s\n' $(($(date +%s) - SCRIPT_START)) "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 30 ]] || die "SECONDS must be a number ≥ 30, not '$DURATION'"
case $PROFILE in
    release) profile_flag=(--release) ;;
    debug) profile_flag=() ;;
    *) die "SOAK_PROFILE must be release or debug, not '$PROFILE'" ;;
esac

# ------------------------------------------------ processes we started -----
# The processes started here, stopped on exit (see benches/processes.sh).
source "$(dirname "${BASH_SOURCE[0]}")/../processes.sh"

# ---------------------------------------------------------------- build -----
if [[ ${BUILD:-1} == 1 ]]; then
    log "building (cargo build ${profile_flag[*]} --bin gatehouse --example soak)"
    (cd "$ROOT" && cargo build "${profile_flag[@]}" --quiet --bin gatehouse --example soak)
fi
[[ -x $GH ]] || die "$GH is missing: run cargo build ${profile_flag[*]} --bin gatehouse"
[[ -x $GEN ]] || die "$GEN is missing: run cargo build ${profile_flag[*]} --example soak"
[[ -x $PY ]] || die "$PY is missing: run scripts/test once (it creates the chatbot's virtualenv) or set GATEHOUSE_TEST_VENV"

# ------------------------------------------------ work folder, secrets -----
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-soak.XXXXXX")
SOAK_PASSWORD="soak-$("$PY" -c 'import secrets; print(secrets.token_urlsafe(18))')"
cat >"$WORK/users.yaml" <<EOF
users:
  - username: soak
    password_hash: '$(printf '%s\n' "$SOAK_PASSWORD" | "$GH" hash-password)'
    roles: [user]
EOF
key_out=$("$GH" gen-api-key --name soak-bot)
SOAK_API_KEY=$(head -1 <<<"$key_out")
SOAK_API_KEY_SHA256=$(sed -n 's/^ *sha256: *//p' <<<"$key_out")
[[ ${#SOAK_API_KEY_SHA256} == 64 ]] || die "cannot read the sha256 of gatehouse gen-api-key"
read -r SOAK_HTTPS_PORT SOAK_ADMIN_PORT SOAK_BACKEND_PORT < <("$PY" -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')
export SOAK_WORK=$WORK SOAK_HTTPS_PORT SOAK_ADMIN_PORT SOAK_BACKEND_PORT SOAK_API_KEY_SHA256

wait_ok() { # wait_ok PID LOG URL: until URL answers 2xx (30 s) while PID lives
    local pid=$1 logf=$2 url=$3 i
    for i in $(seq 300); do
        "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url" \
            2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || die "the server for $url exited: $(tail -5 "$logf")"
        sleep 0.1
    done
    die "$url never answered (log: $(tail -5 "$logf"))"
}

# -------------------------------------------------------- start servers -----
log "starting the FastAPI chatbot (uvicorn, 127.0.0.1:$SOAK_BACKEND_PORT)"
"$PY" -m uvicorn app:app --app-dir "$ROOT/examples/chatbot" --host 127.0.0.1 --port "$SOAK_BACKEND_PORT" \
    --no-access-log --log-level warning >"$WORK/backend.log" 2>&1 &
BACKEND_PID=$!; STARTED+=("$BACKEND_PID")
wait_ok "$BACKEND_PID" "$WORK/backend.log" "http://127.0.0.1:$SOAK_BACKEND_PORT/health"

log "starting gatehouse ($PROFILE build, https 127.0.0.1:$SOAK_HTTPS_PORT, admin 127.0.0.1:$SOAK_ADMIN_PORT)"
# The default log level: one JSON access-log line per request, to a file.
"$GH" --config "$SOAK_DIR/gatehouse.yaml" >"$WORK/gatehouse.log" 2>&1 &
GH_PID=$!; STARTED+=("$GH_PID")
wait_ok "$GH_PID" "$WORK/gatehouse.log" "http://127.0.0.1:$SOAK_ADMIN_PORT/readyz"

# ----------------------------------------------------------------- load -----
log "running ${DURATION}s of mixed load (rate ×$RATE), then up to ${SETTLE}s for descriptors to settle"
gen_status=0
SOAK_PASSWORD=$SOAK_PASSWORD SOAK_API_KEY=$SOAK_API_KEY "$GEN" \
    --https "127.0.0.1:$SOAK_HTTPS_PORT" --admin "127.0.0.1:$SOAK_ADMIN_PORT" \
    --backend "127.0.0.1:$SOAK_BACKEND_PORT" --pid "$GH_PID" --ca "$WORK/cert.pem" \
    --seconds "$DURATION" --rate "$RATE" --settle "$SETTLE" | tee "$WORK/report.txt" || gen_status=$?

# ------------------------------------------------------ gatehouse's end -----
failed=()
((gen_status == 0)) || failed+=("the load generator reported a failure (exit $gen_status)")
if grep -q 'panicked' "$WORK/gatehouse.log"; then
    failed+=("gatehouse's log holds a panic: $(grep -m1 'panicked' "$WORK/gatehouse.log")")
fi
if kill -0 "$GH_PID" 2>/dev/null; then
    kill -TERM "$GH_PID"
    gh_status=0
    for i in $(seq 100); do kill -0 "$GH_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$GH_PID" 2>/dev/null; then
        failed+=("gatehouse did not stop within 10 s of SIGTERM")
    else
        wait "$GH_PID" || gh_status=$?
        ((gh_status == 0)) || failed+=("gatehouse exited with status $gh_status on SIGTERM")
    fi
    forget_pid "$GH_PID"
else
    failed+=("gatehouse was not running at the end")
fi
# Access-log lines are JSON on stdout; every other line is text on stderr.
# Its warnings and errors, counted by message (without time and fields): the
# refresh-token reuse the load asks for is one; anything else deserves a look.
echo "gatehouse's log: $(grep -c '^{' "$WORK/gatehouse.log" || true) access-log lines; warnings and errors:"
grep -E '^[0-9TZ:.-]+ +(WARN|ERROR) ' "$WORK/gatehouse.log" |
    sed -E 's/^[^ ]+ +//; s/( [a-z_.]+=[^ ]*)+$//' | sort | uniq -c | sort -rn | head -10 || true
echo "soak: ${DURATION}s of load, $PROFILE build, $(nproc) CPUs, took $(($(date +%s) - SCRIPT_START))s in all"
if ((${#failed[@]})); then
    for f in "${failed[@]}"; do log "FAILED: $f"; done
    exit 1
fi
log "passed"
