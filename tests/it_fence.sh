#!/usr/bin/env bash
# Fencing.  Server 1 is paused with SIGSTOP past its session timeout; the coordinator
# (external launcher) gives its shards to the standby server 2.  A request with the old
# epoch is queued at the paused server, then it gets SIGCONT: it must not serve that
# request (its ZooKeeper lease lapsed), and it exits because its session is gone.
# Training finishes on the standby.
. "$FLR_SRCDIR/tests/lib.sh"

need_fashion_mnist
job=fence
cluster_spawn coord "$B/flr-coordinator" --zk "$ZK" --job $job --servers 2 --workers 2 \
    --model softmax --report "$T/$job.json" --session-timeout 2000
for i in 0 1; do
    cluster_spawn "s$i" "$B/flr-server" --zk "$ZK" --job $job --id $i --session-timeout 2000
done
for i in 0 1; do
    cluster_spawn "w$i" "$B/flr-worker" --zk "$ZK" --job $job --id $i --epochs 3 --batch 32 \
        --session-timeout 2000
done
wait_for 60 grep -q 'coord.job_running' "$T/coord.log" || fail "job did not start"
# The standby registers once the job runs, well before the failure.
cluster_spawn s2 "$B/flr-server" --zk "$ZK" --job $job --id 2 --session-timeout 2000
wait_for 20 grep -q 'srv.start' "$T/s2.log" || fail "the standby did not register"
grep -q 'srv.load' "$T/s2.log" && fail "the standby was given shards before any failure"
url=$(grep -o 'listening on tcp://[0-9.:]*' "$T/s1.log" | sed 's/listening on //')
shard=$(grep -o 'shard [0-9]*: serving at epoch 1' "$T/s1.log" | head -n 1 | awk '{print $2}' | tr -d :)
[ -n "$url" ] && [ -n "$shard" ] || fail "cannot find server 1's endpoint and shard"
sleep 1
cluster_kill s1 STOP
wait_for 20 grep -q 'coord.shards_assigned' "$T/coord.log" || fail "server 1's shards were not reassigned"
grep -q 'to server 2' "$T/coord.log" || fail "the standby did not take over"
# A worker with a stale map: its pull waits in the paused server's socket.
"$B/tests/badreq" probe "$url" $job "$shard" 1 >"$T/probe.out" 2>&1 &
probe=$!
sleep 0.5
cluster_kill s1 CONT
wait "$probe" && fail "the paused server served shard $shard after its lease lapsed: $(cat "$T/probe.out")"
echo "after SIGCONT: $(cat "$T/probe.out")"
cluster_wait s1 20 || fail "the paused server did not stop after SIGCONT"
[ "$CLUSTER_RC" -eq 3 ] || fail "the paused server exited with $CLUSTER_RC, want 3 (session expired)"
grep -q 'srv.lease\|srv.expired' "$T/s1.log" || fail "server 1 did not say why it stopped"
cluster_wait coord 300 || fail "training did not finish on the standby"
[ "$CLUSTER_RC" -eq 0 ] || fail "coordinator exited with $CLUSTER_RC"
exits_ok 30 w0 w1 s0 s2
echo "PASS"
