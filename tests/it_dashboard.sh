#!/usr/bin/env bash
# The dashboard in a real browser.  Headless chromium loads GET / from the coordinator of a
# running job (local launcher, two servers and a standby), and the page it renders shows
# the cluster: a box per server, the standby marked, every shard in its owner's box in its
# state's colour.  Then an operator kills a server with flrctl; the coordinator relaunches
# it and rebuilds its shards, and the dashboard's recovery timeline shows the recovery
# done and the kill among the events.  The last rendering is saved as a screenshot:
#
#   tests/it_dashboard.sh [PNG]     (or FLR_DASHBOARD_PNG=PNG; default: a temporary file)
#
# FLR_DASHBOARD_CURVE=N waits for N points of the training curve before the screenshot
# (default 1), for a picture with more to see, e.g. to refresh the documentation's:
#
#   FLR_BUILDDIR=build FLR_SRCDIR=. FLR_DASHBOARD_CURVE=4 tests/it_dashboard.sh docs/dashboard.png
. "$FLR_SRCDIR/tests/lib.sh"

need_tool chromium chromium
need_tool curl curl
need_tool jq jq
need_fashion_mnist

png=${1:-${FLR_DASHBOARD_PNG:-$T/dashboard.png}}
case "$png" in /*) ;; *) png="$PWD/$png" ;; esac
job=dash
echo "dash-$RANDOM$RANDOM" >"$T/token"

# render FILE [PNG]: the page as chromium has it after a few (virtual) seconds of polling.
render() {
    local out=$1 shot=${2:-} args
    args=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run
        --hide-scrollbars --user-data-dir="$T/chromium" --window-size=1400,1350
        --virtual-time-budget=4000)
    timeout 120 chromium "${args[@]}" --dump-dom "$URL/" >"$out" 2>"$T/chromium.err" ||
        fail "chromium --dump-dom failed: $(tail -n 5 "$T/chromium.err")"
    if [ -n "$shot" ]; then
        timeout 120 chromium "${args[@]}" --screenshot="$shot" "$URL/" >/dev/null 2>>"$T/chromium.err" ||
            fail "chromium --screenshot failed: $(tail -n 5 "$T/chromium.err")"
    fi
}
# dom_has FILE PATTERN WHAT: the rendered page contains PATTERN (extended regex).
dom_has() {
    grep -qE -- "$2" "$1" || fail "the dashboard does not show $3 (no /$2/ in $1)"
}

cluster_spawn coord "$B/flr-coordinator" --zk "$ZK" --job $job --servers 2 --workers 2 \
    --model softmax --consistency bsp --launcher local --standby 1 --server-logs "$T" \
    --session-timeout 2000 --http-token-file "$T/token"
for i in 0 1; do
    cluster_spawn "w$i" "$B/flr-worker" --zk "$ZK" --job $job --id $i --epochs 40 --batch 32 \
        --session-timeout 2000
done
wait_for 60 grep -qE 'coord\.(job_)?running' "$T/coord.log" || fail "job did not start"
URL=$(sed -n 's/.*status endpoint at \(http:[^ ]*\).*/\1/p' "$T/coord.log" | head -n 1)
[ -n "$URL" ] || fail "the coordinator logged no status endpoint"
serving() {
    curl -sf "$URL/status" >"$T/st.json" &&
        jq -e '([.servers[] | select(.state == "STANDBY")] | length) == 1 and
               ([.shards[] | select(.state == "ACTIVE" and .rows != null)] | length) == 8' \
            "$T/st.json" >/dev/null
}
wait_for 30 serving || fail "the cluster did not settle: $(jq -c . "$T/st.json")"
standby=$(jq -r '[.servers[] | select(.state == "STANDBY")][0].id' "$T/st.json")

# --- the cluster, as the browser renders it --------------------------------------------------
render "$T/dom1.html"
dom_has "$T/dom1.html" '<body[^>]* data-rendered="[0-9]+"' "a rendering of /status (the page's script failed?)"
dom_has "$T/dom1.html" 'id="job-state" class="badge st-running">running<' "the job as running"
for s in 0 1; do
    dom_has "$T/dom1.html" "<div class=\"server\" data-server=\"$s\" data-state=\"SERVING\"" "server $s's box"
done
dom_has "$T/dom1.html" "<div class=\"server standby\" data-server=\"$standby\" data-state=\"STANDBY\"" \
    "the standby server $standby"
# Every shard sits in its owner's box, coloured ACTIVE.
dom=$(cat "$T/dom1.html")
for s in 0 1; do
    box=${dom#*<div class=\"server\" data-server=\"$s\"}
    box=${box%%<div class=\"server*}
    box=${box%%<div class=\"legend\"*}
    for sh in $(jq -r ".shards[] | select(.owner == $s) | .shard" "$T/st.json"); do
        [[ "$box" == *"<div class=\"shard ACTIVE\" data-shard=\"$sh\" data-state=\"ACTIVE\""* ]] ||
            fail "shard $sh is not shown ACTIVE in server $s's box"
    done
done
[ "$(grep -o '<div class="shard ACTIVE" data-shard=' "$T/dom1.html" | wc -l)" -eq 8 ] ||
    fail "the cluster map does not show 8 ACTIVE shards"
dom_has "$T/dom1.html" '<tr data-worker="1" data-status="training">' "worker 1 training"
echo "ok: the dashboard shows servers 0 and 1, standby $standby and 8 ACTIVE shards"

# --- an operator kills server 1; the coordinator recovers it ------------------------------------
"$B/flrctl" --zk "$ZK" --job $job --token-file "$T/token" kill-server 1 >"$T/kill.out" 2>"$T/kill.err" ||
    fail "flrctl kill-server 1 failed: $(cat "$T/kill.err")"
grep -q 'kill of server 1 queued as q_' "$T/kill.out" || fail "flrctl: $(cat "$T/kill.out")"
recovered() {
    curl -sf "$URL/status" >"$T/st.json" &&
        jq -e '([.recoveries[] | select(.server == 1 and .phase == "done")] | length) == 1 and
               ([.shards[] | select(.state == "ACTIVE")] | length) == 8 and
               (.curve | length) >= '"${FLR_DASHBOARD_CURVE:-1}" "$T/st.json" >/dev/null
}
wait_for 120 recovered || fail "no finished recovery of server 1: $(jq -c '{recoveries, shards, events}' "$T/st.json")"
rec=$(jq -r '[.recoveries[] | select(.server == 1)][0].id' "$T/st.json")
echo "ok: $(jq -c "[.recoveries[] | select(.id == \"$rec\")][0] | {id, server, phase, target, detect_ms, recover_ms, rows_lost}" "$T/st.json")"

render "$T/dom2.html" "$png"
dom_has "$T/dom2.html" "<tr class=\"recovery\" data-recovery=\"$rec\" data-phase=\"done\" data-kind=\"loss\">" \
    "recovery $rec done"
dom_has "$T/dom2.html" '<tr class="event" data-kind="server_killed">' "the kill among the events"
dom_has "$T/dom2.html" '<tr class="event" data-kind="server_lost">' "the loss among the events"
dom_has "$T/dom2.html" '<div data-total="recoveries"><b>1</b>' "one recovery in the totals"
dom_has "$T/dom2.html" '<circle [^>]*class="point test_accuracy"' "the training curve"
[ "$(grep -o '<div class="shard ACTIVE" data-shard=' "$T/dom2.html" | wc -l)" -eq 8 ] ||
    fail "after the recovery the cluster map does not show 8 ACTIVE shards"
head -c 8 "$png" | od -An -tx1 | grep -q '89 50 4e 47 0d 0a 1a 0a' || fail "$png is not a PNG"
[ "$(stat -c %s "$png")" -gt 20000 ] || fail "$png is suspiciously small"
echo "ok: the dashboard shows recovery $rec done; screenshot $png ($(stat -c %s "$png") bytes)"
echo "PASS"
