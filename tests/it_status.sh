#!/usr/bin/env bash
# The coordinator's status endpoint on a running job.  GET /status carries the job, its
# leader, servers (one of them a standby), shards and workers; GET /metrics passes
# promtool; POST needs the operator token and queues a request node; a follower redirects
# to the leader (and asks for the token on reads with --http-auth-reads); flrctl prints
# the endpoint's document and falls back to ZooKeeper once the coordinator is gone; bad
# paths, methods, ids and bodies get 404, 405, 400, 413 with one-line answers.
. "$FLR_SRCDIR/tests/lib.sh"

need_tool curl curl
need_tool jq jq
need_tool promtool prometheus
need_fashion_mnist

job=stat
echo "s3cret-$RANDOM" >"$T/token"
TOKEN=$(cat "$T/token")
cargs=(--zk "$ZK" --job $job --servers 2 --workers 2 --model softmax --session-timeout 2000
    --http-token-file "$T/token")

# code ARGS...: curl's HTTP status; the body goes to $T/body, headers to $T/headers.
code() {
    curl -s -o "$T/body" -D "$T/headers" -w '%{http_code}' "$@" || true
}
# expect CODE PATTERN ARGS...: the request answers CODE with a one-line body matching PATTERN.
expect() {
    local want=$1 pat=$2 got
    shift 2
    got=$(code "$@")
    [ "$got" = "$want" ] || fail "curl $* answered $got, expected $want: $(cat "$T/body")"
    [ "$(wc -l <"$T/body")" -le 1 ] || fail "curl $*: the body is not one line: $(cat "$T/body")"
    grep -qE -- "$pat" "$T/body" || fail "curl $*: '$(cat "$T/body")' does not match '$pat'"
    echo "ok: $want $(head -c 100 "$T/body")"
}
endpoint_of() {
    sed -n 's/.*status endpoint at \(http:[^ ]*\).*/\1/p' "$T/$1.log" | head -n 1
}

cluster_spawn coord "$B/flr-coordinator" "${cargs[@]}"
wait_for 20 grep -q 'coord.leader' "$T/coord.log" || fail "the coordinator did not lead"
URL=$(endpoint_of coord)
[ -n "$URL" ] || fail "the coordinator logged no status endpoint"
cluster_spawn coord2 "$B/flr-coordinator" "${cargs[@]}" --http-auth-reads
wait_for 20 grep -q 'coord.follower' "$T/coord2.log" || fail "the second coordinator did not follow"
URL2=$(endpoint_of coord2)
for i in 0 1; do
    cluster_spawn "s$i" "$B/flr-server" --zk "$ZK" --job $job --id $i --session-timeout 2000
done
for i in 0 1; do
    cluster_spawn "w$i" "$B/flr-worker" --zk "$ZK" --job $job --id $i --epochs 100 --batch 32 \
        --session-timeout 2000
done
wait_for 60 grep -qE 'coord\.(job_)?running' "$T/coord.log" || fail "job did not start"
# Server 2 registers once the shards are assigned: a standby (had it come first, the
# coordinator could have chosen it over server 1).
cluster_spawn s2 "$B/flr-server" --zk "$ZK" --job $job --id 2 --session-timeout 2000
echo "leader at $URL, follower at $URL2"

# --- GET /status --------------------------------------------------------------------------
status_ready() {
    curl -sf "$URL/status" >"$T/st.json" &&
        jq -e '.state == "running" and ([.servers[] | select(.reachable)] | length) == 3 and
               ([.shards[] | select(.rows != null)] | length) == 8 and
               (.throughput.keys_pushed_per_second // 0) > 0' "$T/st.json" >/dev/null
}
wait_for 20 status_ready || fail "GET /status never showed the running job: $(cat "$T/st.json")"
check() {
    jq -e "$1" "$T/st.json" >/dev/null || fail "GET /status: '$1' does not hold: $(jq -c . "$T/st.json")"
}
check '.job == "stat" and .exists and .epoch >= 1 and .model == "softmax"'
check '.recovery == "flr" and .consistency == "bsp" and (.started_ms | type) == "number"'
check '.now_ms >= .started_ms and .collect_ms >= 0'
check ".leader.http == \"$URL\" and .leader.candidate == \"c_0000000000\""
check '(.coordinators | length) == 2 and .coordinators[1].http != ""'
check '[.servers[].id] == [0, 1, 2] and ([.servers[] | select(.state == "STANDBY")] | length) == 1'
check '[.servers[] | select(.id == 2)][0].state == "STANDBY"'
check 'all(.servers[]; .reachable and .requests > 0 and (.incarnation | type) == "number")'
check '(.shards | length) == 8 and all(.shards[]; .state == "ACTIVE" and (.owner == 0 or .owner == 1))'
check 'all(.shards[]; .rows > 0 and .bytes > 0 and .pulls >= 0 and .pushes >= 0)'
check '(.workers | length) == 2 and all(.workers[]; .alive and (.removed | not))'
check '(.curve | type) == "array" and (.events | type) == "array" and (.recoveries | type) == "array"'
check '.totals.recoveries == 0 and .totals.rows_lost == 0'
grep -qi '^content-type: application/json' < <(curl -s -D - -o /dev/null "$URL/status") ||
    fail "GET /status is not application/json"
echo "ok: GET /status: $(jq -c '{state, epoch, servers: (.servers | length), shards: (.shards | length), keys_per_s: .throughput.keys_pushed_per_second}' "$T/st.json")"

# --- GET /metrics -------------------------------------------------------------------------
curl -sf -D "$T/mh" "$URL/metrics" >"$T/metrics.txt" || fail "GET /metrics failed"
grep -qi '^content-type: text/plain; version=0.0.4' "$T/mh" || fail "GET /metrics: wrong content type"
promtool check metrics <"$T/metrics.txt" >"$T/promtool.out" 2>&1 ||
    fail "promtool check metrics: $(cat "$T/promtool.out")"
for m in 'flr_job_state{state="running"} 1' 'flr_servers_reachable 3' \
    'flr_shard_state{shard="0",server="0",state="ACTIVE"} 1' 'flr_recoveries_total 0' \
    'flr_rows_lost_total 0' 'flr_worker_alive{worker="1"} 1' 'flr_server_serving{server="2"} 0'; do
    grep -qxF "$m" "$T/metrics.txt" || fail "GET /metrics lacks '$m'"
done
grep -q '^flr_server_requests_total{server="0"} [1-9]' "$T/metrics.txt" || fail "no request counter"
echo "ok: GET /metrics: $(grep -c '^flr_' "$T/metrics.txt") samples, promtool check metrics passes"

# --- the dashboard, 404, 405, bad input -----------------------------------------------------
[ "$(code "$URL/")" = 200 ] || fail "GET / answered $(cat "$T/body")"
grep -q '<title>flr dashboard</title>' "$T/body" || fail "GET / is not the dashboard"
expect 404 'no such path: /nope' "$URL/nope"
expect 404 'no such path' "$URL/status/extra"
expect 405 'answers GET and HEAD, not DELETE' -X DELETE "$URL/status"
expect 405 'answers GET and HEAD, not POST' -X POST -H "Authorization: Bearer $TOKEN" "$URL/metrics"
grep -qi '^allow: GET, HEAD' "$T/headers" || fail "405 without an Allow header"
expect 405 'needs POST, not GET' "$URL/api/servers/1/kill"

# --- POST: the token ----------------------------------------------------------------------
expect 403 'Authorization: Bearer' -X POST "$URL/api/servers/2/drain"
expect 403 'does not match' -X POST -H "Authorization: Bearer wrong" "$URL/api/servers/2/drain"
expect 403 'does not match' -X POST -H "Authorization: Bearer ${TOKEN}x" "$URL/api/servers/2/drain"
expect 400 "server id 'abc' is not a number" -X POST -H "Authorization: Bearer $TOKEN" \
    "$URL/api/servers/abc/kill"
expect 404 'server 99 is not registered in job stat' -X POST -H "Authorization: Bearer $TOKEN" \
    "$URL/api/servers/99/kill"
expect 404 "unknown command 'reboot'" -X POST -H "Authorization: Bearer $TOKEN" \
    "$URL/api/servers/1/reboot"
head -c 10000 /dev/zero | tr '\0' x >"$T/big"
expect 413 'larger than the 4096 accepted' -X POST -H "Authorization: Bearer $TOKEN" \
    --data-binary @"$T/big" "$URL/api/servers/2/drain"
# A second standby, server 3, holds no shards: draining it just stops it.
cluster_spawn s3 "$B/flr-server" --zk "$ZK" --job $job --id 3 --session-timeout 2000
wait_for 20 grep -q 'srv.start' "$T/s3.log" || fail "server 3 did not register"
got=$(code -X POST -H "Authorization: Bearer $TOKEN" "$URL/api/servers/3/drain")
[ "$got" = 202 ] || fail "POST with the token answered $got: $(cat "$T/body")"
q=$(jq -r .request "$T/body")
[[ "$q" == q_* ]] || fail "the 202 answer names no request node: $(cat "$T/body")"
jq -e '.action == "drain" and .server == 3' "$T/body" >/dev/null || fail "202 body: $(cat "$T/body")"
# The node is in ZooKeeper: pending in the document, or already taken by the leader, which
# then records an event about it.
request_seen() {
    curl -sf "$URL/status" >"$T/st2.json" &&
        jq -e --arg q "$q" '([.requests[]? | select(.id == $q and .action == "drain" and
                                                   .server == 3 and .from == "http")] | length) > 0
                            or ([.events[]? | select(.request == $q or
                                 ((.message // "") | contains($q)))] | length) > 0' \
            "$T/st2.json" >/dev/null
}
wait_for 10 request_seen || fail "request $q is neither pending nor recorded: $(jq -c '{requests, events}' "$T/st2.json")"
echo "ok: 202 queued $q and the node is in ZooKeeper"
cluster_wait s3 20 || fail "the drained standby did not stop"
[ "$CLUSTER_RC" -eq 0 ] || fail "the drained standby exited with $CLUSTER_RC"
gone3() { curl -sf "$URL/status" | jq -e '[.servers[].id] == [0, 1, 2]' >/dev/null; }
wait_for 10 gone3 || fail "the endpoint still lists the drained standby"
echo "ok: the drained standby stopped"

# --- the follower ---------------------------------------------------------------------------
expect 403 'Authorization: Bearer' "$URL2/status"
got=$(code -H "Authorization: Bearer $TOKEN" "$URL2/status")
[ "$got" = 307 ] || fail "the follower answered $got instead of redirecting: $(cat "$T/body")"
grep -qi "^location: $URL/status" "$T/headers" || fail "the follower redirects elsewhere: $(cat "$T/headers")"
curl -sfL -H "Authorization: Bearer $TOKEN" "$URL2/status" | jq -e ".leader.http == \"$URL\"" \
    >/dev/null || fail "following the redirect does not reach the leader's document"
[ "$(code "$URL2/")" = 307 ] || fail "the follower's dashboard does not redirect"
echo "ok: the follower redirects to $URL"

# --- flrctl ---------------------------------------------------------------------------------
stable='{job, state, epoch, recovery, consistency, model, started_ms, leader,
         coordinators: [.coordinators[] | {candidate, http, leader}],
         servers: [.servers[] | {id, endpoint, state, incarnation, pid}],
         shards: [.shards[] | {shard, owner, epoch, state}],
         workers: [.workers[] | {id, alive, removed}], totals}'
"$B/flrctl" --zk "$ZK" --job $job status --json >"$T/ctl.json" 2>"$T/ctl.err" ||
    fail "flrctl status --json failed: $(cat "$T/ctl.err")"
[ ! -s "$T/ctl.err" ] || fail "flrctl read ZooKeeper although the endpoint is up: $(cat "$T/ctl.err")"
curl -sf "$URL/status" >"$T/ep.json"
diff <(jq -S "$stable" "$T/ctl.json") <(jq -S "$stable" "$T/ep.json") >"$T/diff" ||
    fail "flrctl status --json differs from GET /status: $(cat "$T/diff")"
"$B/flrctl" --zk "$ZK" --job $job --url "$URL2" --token-file "$T/token" status --json >"$T/ctl2.json" ||
    fail "flrctl through the follower failed"
jq -e ".leader.http == \"$URL\"" "$T/ctl2.json" >/dev/null || fail "flrctl did not follow the redirect"
"$B/flrctl" --zk "$ZK" --job $job status >"$T/human.txt" || fail "flrctl status failed"
grep -q '^job stat: running, epoch' "$T/human.txt" || fail "flrctl status: $(cat "$T/human.txt")"
grep -qE '^ *2 +STANDBY +yes' "$T/human.txt" || fail "flrctl status lacks the standby: $(cat "$T/human.txt")"
[ "$("$B/flrctl" --zk "$ZK" --job $job shards | grep -c ACTIVE)" = 8 ] || fail "flrctl shards"
"$B/flrctl" --zk "$ZK" --job $job events >/dev/null || fail "flrctl events failed"
rc=0
"$B/flrctl" --zk "$ZK" --job $job kill-server 1 >/dev/null 2>"$T/err" || rc=$?
[ $rc = 1 ] && grep -q '403.*--token-file' "$T/err" || fail "kill-server without a token: rc $rc, $(cat "$T/err")"
rc=0
"$B/flrctl" --zk "$ZK" --job $job --token-file "$T/token" drain abc 2>"$T/err" || rc=$?
[ $rc = 2 ] && grep -q "'abc' is not a number" "$T/err" || fail "drain abc: rc $rc, $(cat "$T/err")"
rc=0
"$B/flrctl" --zk "$ZK" --job $job --token-file "$T/token" drain 99 2>"$T/err" || rc=$?
[ $rc = 1 ] && grep -q 'server 99 is not registered' "$T/err" || fail "drain 99: rc $rc, $(cat "$T/err")"
rc=0
"$B/flrctl" --zk "$ZK" --job $job frobnicate 2>"$T/err" || rc=$?
[ $rc = 2 ] || fail "an unknown command exits $rc"
echo "ok: flrctl status --json equals GET /status in its stable fields"

# --- the endpoint goes away: flrctl reads ZooKeeper -------------------------------------------
cluster_kill coord2 TERM
cluster_wait coord2 20 || fail "the follower did not stop"
cluster_kill coord KILL
cluster_wait coord 10 || true
"$B/flrctl" --zk "$ZK" --job $job --url "$URL" status --json >"$T/fb.json" 2>"$T/fb.err" ||
    fail "flrctl did not fall back to ZooKeeper: $(cat "$T/fb.err")"
grep -q "GET $URL/status: .*; reading ZooKeeper at $ZK directly" "$T/fb.err" ||
    fail "flrctl did not say it fell back: $(cat "$T/fb.err")"
jq -e '.state == "running" and all(.servers[]; .reachable) and (.shards | length) == 8' "$T/fb.json" \
    >/dev/null || fail "the fallback document is incomplete: $(jq -c . "$T/fb.json")"
diff <(jq -S '{job, shards: [.shards[] | {shard, owner, epoch, state}], servers: [.servers[] | {id, endpoint}]}' "$T/fb.json") \
    <(jq -S '{job, shards: [.shards[] | {shard, owner, epoch, state}], servers: [.servers[] | {id, endpoint}]}' "$T/ep.json") \
    >"$T/diff" || fail "the fallback document disagrees with the endpoint's: $(cat "$T/diff")"
# Once the dead leader's session is gone, no coordinator is left at all.
no_leader() {
    "$B/flrctl" --zk "$ZK" --job $job status --json 2>"$T/fb2.err" | jq -e '.leader == null' >/dev/null
}
wait_for 10 no_leader || fail "the dead leader is still listed: $(cat "$T/fb2.err")"
"$B/flrctl" --zk "$ZK" --job $job status >/dev/null 2>"$T/fb2.err" || fail "flrctl status without a coordinator failed"
grep -q "no coordinator of job stat is running; reading ZooKeeper" "$T/fb2.err" ||
    fail "flrctl did not explain the fallback: $(cat "$T/fb2.err")"
"$B/flrctl" --zk "$ZK" --job $job --token-file "$T/token" drain 2 >"$T/out" 2>"$T/err" ||
    fail "drain without a coordinator failed: $(cat "$T/err")"
grep -q 'writing the request to ZooKeeper' "$T/err" || fail "flrctl did not say it wrote the node itself"
q2=$(sed -n 's/.*queued as \(q_[0-9]*\).*/\1/p' "$T/out")
"$B/flrctl" --zk "$ZK" --job $job status --json 2>/dev/null |
    jq -e --arg q "$q2" '[.requests[] | select(.id == $q and .from == "flrctl")] | length == 1' \
        >/dev/null || fail "the request $q2 written by flrctl is not in ZooKeeper"
echo "ok: without a coordinator flrctl reads ZooKeeper and queued $q2 itself"
echo "PASS"
