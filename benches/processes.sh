# benches/processes.sh — sourced by benches/load/run.sh and benches/soak/run.sh:
# the processes a benchmark started, and stopping exactly those. Every
# long-running process goes into STARTED; on exit, cleanup stops exactly those
# PIDs (SIGTERM, then SIGKILL after 5 s), newest first. A PID stopped earlier
# is removed from the list first, so a recycled PID is never signalled. WORK,
# the benchmark's temporary folder, is removed unless KEEP_WORK=1 or the run
# failed. The sourcing script defines log().
STARTED=()
WORK=""
stop_pid() {
    local pid=$1 i
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}
forget_pid() { # drop a PID that has exited (and was reaped) from STARTED
    local keep=() i
    for i in "${STARTED[@]}"; do [[ $i == "$1" ]] || keep+=("$i"); done
    STARTED=("${keep[@]}")
}
cleanup() {
    local rc=$? i
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop_pid "${STARTED[i]}"; done
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ ${KEEP_WORK:-0} == 1 || $rc != 0 ]]; then
            log "configs, logs and reports kept in $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
