#!/usr/bin/env bash
# cluster.sh - start and stop a local flr cluster on loopback: a ZooKeeper of its own (or
# an existing one), a coordinator, servers and workers, each a real process with its own
# log.  Sourced by scripts/demo.sh and the integration tests; not run directly.
#
#   cluster_init DIR BINDIR     work directory (logs, ZooKeeper data) and where flr-* are
#   cluster_zk_start [TICK_MS]  starts ZooKeeper, sets ZK (HOST:PORT)
#   cluster_spawn NAME CMD...   starts CMD in the background, log in DIR/NAME.log,
#                               pid in CLUSTER_PID[NAME]
#   cluster_kill NAME [SIG]     sends SIG (default TERM) to NAME
#   cluster_alive NAME          true while NAME runs
#   cluster_wait NAME [SECS]    waits for NAME to exit, sets CLUSTER_RC
#   wait_for SECS CMD...        polls CMD every 0.1 s until it succeeds (bounded)
#   cluster_strays              pids of flr-* processes still using this cluster's ZooKeeper
#   cluster_cleanup             stops everything this cluster started, then ZooKeeper
# cluster_init installs cluster_cleanup as the EXIT/INT/TERM trap, so processes are
# stopped also when a test fails or the user presses Ctrl-C.  The work directory is
# removed then too, unless CLUSTER_KEEP=1 is set (to read the logs afterwards).

declare -gA CLUSTER_PID=()
CLUSTER_DIR=""
CLUSTER_BIN=""
CLUSTER_OWN_ZK=0
CLUSTER_KEEP=${CLUSTER_KEEP:-0}
CLUSTER_RC=0
ZK=""

cluster_init() {
    CLUSTER_DIR=$1
    CLUSTER_BIN=$2
    # Huge pages for the heap of every flr process started here (docs/operations.md):
    # rebuilds and large pulls receive into fresh messages, and faulting in 4 KiB pages
    # costs more than the copy.
    case "${GLIBC_TUNABLES:-}" in
    *glibc.malloc.hugetlb*) ;;
    "") export GLIBC_TUNABLES=glibc.malloc.hugetlb=1 ;;
    *) export GLIBC_TUNABLES="$GLIBC_TUNABLES:glibc.malloc.hugetlb=1" ;;
    esac
    mkdir -p "$CLUSTER_DIR"
    trap 'cluster_cleanup' EXIT
    trap 'cluster_cleanup; exit 130' INT
    trap 'cluster_cleanup; exit 143' TERM
}

cluster_zk_start() {
    local here
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    ZK=$("$here/tests/zk.sh" start "$CLUSTER_DIR/zk" "${1:-200}" $$) || return 1
    CLUSTER_OWN_ZK=1
}

cluster_spawn() {
    local name=$1
    shift
    "$@" >"$CLUSTER_DIR/$name.log" 2>&1 </dev/null &
    CLUSTER_PID[$name]=$!
}

cluster_alive() {
    local pid=${CLUSTER_PID[$1]:-}
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

cluster_kill() {
    local pid=${CLUSTER_PID[$1]:-}
    [ -n "$pid" ] && kill -"${2:-TERM}" "$pid" 2>/dev/null || true
}

cluster_wait() {
    local name=$1 secs=${2:-600} pid=${CLUSTER_PID[$1]:-} i
    CLUSTER_RC=0
    [ -n "$pid" ] || return 1
    for ((i = 0; i < secs * 10; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null && CLUSTER_RC=0 || CLUSTER_RC=$?
            return 0
        fi
        sleep 0.1
    done
    return 1
}

wait_for() {
    local secs=$1 i
    shift
    for ((i = 0; i < secs * 10; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

# cluster_strays: pids of flr-* processes that use this cluster's ZooKeeper.
cluster_strays() {
    [ -n "$ZK" ] || return 0
    pgrep -f -- "flr-[a-z]+ .*--zk $ZK( |\$)" || true
}

cluster_cleanup() {
    local name pid i any
    trap - EXIT INT TERM
    for name in "${!CLUSTER_PID[@]}"; do
        pid=${CLUSTER_PID[$name]}
        kill -CONT "$pid" 2>/dev/null || true
        kill -TERM "$pid" 2>/dev/null || true
    done
    for ((i = 0; i < 50; i++)); do
        any=0
        for name in "${!CLUSTER_PID[@]}"; do
            kill -0 "${CLUSTER_PID[$name]}" 2>/dev/null && any=1
        done
        [ $any -eq 0 ] && break
        sleep 0.1
    done
    for name in "${!CLUSTER_PID[@]}"; do
        kill -KILL "${CLUSTER_PID[$name]}" 2>/dev/null || true
        wait "${CLUSTER_PID[$name]}" 2>/dev/null || true
    done
    CLUSTER_PID=()
    # Servers a coordinator started itself (--launcher local) and left behind when it was
    # killed: everything still pointing at our own ZooKeeper.
    if [ "$CLUSTER_OWN_ZK" = 1 ] && [ -n "$ZK" ]; then
        for pid in $(cluster_strays); do
            kill -KILL "$pid" 2>/dev/null || true
        done
    fi
    if [ "$CLUSTER_OWN_ZK" = 1 ]; then
        local here
        here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
        "$here/tests/zk.sh" stop "$CLUSTER_DIR/zk" || true
        CLUSTER_OWN_ZK=0
    fi
    if [ "$CLUSTER_KEEP" != 1 ] && [ -n "$CLUSTER_DIR" ]; then
        rm -rf "$CLUSTER_DIR"
    fi
}
