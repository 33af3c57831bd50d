#!/usr/bin/env bash
# zk.sh - start or stop a standalone ZooKeeper server (Debian's `zookeeper` package) on a
# free loopback port with its own data directory.  Used by tests, benchmarks and the demo.
#
#   zk.sh start DIR [TICK_MS] [OWNER_PID]
#                               starts it, waits until it serves, prints HOST:PORT; with
#                               OWNER_PID, a watchdog stops it when that process is gone,
#                               so a test that crashes or is killed leaves nothing behind
#   zk.sh stop DIR              stops it (SIGTERM, then SIGKILL) and removes DIR
#
# DIR holds zoo.cfg, data/, zk.log and zk.pid.  The server's minimum session timeout is
# 2 ticks, so a small TICK_MS (default 200) lets tests use short session timeouts.
set -euo pipefail

zk_classpath() {
    local j cp=""
    for j in zookeeper zookeeper-jute slf4j-api slf4j-simple netty-handler netty-common \
        netty-transport netty-buffer netty-codec netty-resolver \
        netty-transport-native-epoll netty-transport-native-unix-common metrics-core \
        commons-cli commons-io snappy-java; do
        if [ -f "/usr/share/java/$j.jar" ]; then
            cp="${cp:+$cp:}/usr/share/java/$j.jar"
        fi
    done
    [ -f /usr/share/java/zookeeper.jar ] || {
        echo "zk.sh: /usr/share/java/zookeeper.jar not found: install the Debian package zookeeper" >&2
        exit 1
    }
    printf '%s' "$cp"
}

free_port() {
    # Ask the kernel for a free port by binding port 0, then release it.
    local p
    for _ in $(seq 1 50); do
        p=$(( (RANDOM % 20000) + 30000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    echo "zk.sh: no free port found" >&2
    return 1
}

# The server answers "ruok" before it serves sessions; "srvr" reports a mode only once it
# does, so clients that connect afterwards are not turned away.
zk_ok() {
    local port=$1 out
    out=$( (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'srvr' >&3 && timeout 2 cat <&3) 2>/dev/null || true)
    case "$out" in *"Mode: standalone"*) return 0 ;; esac
    return 1
}

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: zk.sh start|stop DIR [TICK_MS]" >&2; exit 2; }

case "$cmd" in
start)
    tick=${3:-200}
    owner=${4:-}
    command -v java >/dev/null || { echo "zk.sh: java not found: install a Java runtime (default-jre-headless)" >&2; exit 1; }
    mkdir -p "$dir/data"
    cp=$(zk_classpath)
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        cat > "$dir/zoo.cfg" <<CFG
tickTime=$tick
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
admin.enableServer=false
maxClientCnxns=0
minSessionTimeout=$((tick * 2))
maxSessionTimeout=60000
4lw.commands.whitelist=ruok,stat,srvr
CFG
        # setsid: the server gets its own process group, so that an interrupted test run
        # can take it down with one signal.
        setsid java -Xmx256m -Dzookeeper.snapshot.trust.empty=true -cp "$cp" \
            org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zoo.cfg" \
            > "$dir/zk.log" 2>&1 < /dev/null &
        echo $! > "$dir/zk.pid"
        for _ in $(seq 1 300); do
            if zk_ok "$port"; then
                if [ -n "$owner" ]; then
                    zkpid=$(cat "$dir/zk.pid")
                    (
                        while kill -0 "$owner" 2>/dev/null && kill -0 "$zkpid" 2>/dev/null; do
                            sleep 1
                        done
                        kill "$zkpid" 2>/dev/null
                        sleep 2
                        kill -9 "$zkpid" 2>/dev/null
                        rm -rf "$dir"
                    ) >/dev/null 2>&1 </dev/null &
                    disown
                fi
                echo "127.0.0.1:$port"
                exit 0
            fi
            kill -0 "$(cat "$dir/zk.pid")" 2>/dev/null || break
            sleep 0.05
        done
        kill -9 "$(cat "$dir/zk.pid")" 2>/dev/null || true
        # The port may have been taken between the probe and the bind: try another.
    done
    echo "zk.sh: ZooKeeper did not start; see $dir/zk.log" >&2
    tail -5 "$dir/zk.log" >&2 || true
    exit 1
    ;;
stop)
    if [ -f "$dir/zk.pid" ]; then
        pid=$(cat "$dir/zk.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: zk.sh start|stop DIR [TICK_MS]" >&2
    exit 2
    ;;
esac
