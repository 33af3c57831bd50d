#!/usr/bin/env bash
# The leading coordinator dies in the middle of a recovery.  Server 0 is SIGKILLed; the
# leader (external launcher, no standby) fences its shards and waits for a server.  Then
# the leader is SIGKILLed, server 0 is restarted, and the follower finishes the recovery
# from what ZooKeeper records: the restarted server gets the shards, training finishes.
. "$FLR_SRCDIR/tests/lib.sh"

need_fashion_mnist
job=lrec
cargs=(--zk "$ZK" --job $job --servers 2 --workers 2 --model softmax --report "$T/$job.json"
    --session-timeout 2000)
cluster_spawn coordA "$B/flr-coordinator" "${cargs[@]}"
wait_for 20 grep -q 'coord.leader' "$T/coordA.log" || fail "the first coordinator did not lead"
cluster_spawn coordB "$B/flr-coordinator" "${cargs[@]}"
wait_for 20 grep -q 'coord.follower' "$T/coordB.log" || fail "the second coordinator did not follow"
for i in 0 1; do
    cluster_spawn "s$i" "$B/flr-server" --zk "$ZK" --job $job --id $i --session-timeout 2000
    cluster_spawn "w$i" "$B/flr-worker" --zk "$ZK" --job $job --id $i --epochs 3 --batch 32 \
        --session-timeout 2000
done
wait_for 60 grep -q 'coord.job_running' "$T/coordA.log" || fail "job did not start"
sleep 1
cluster_kill s0 KILL
wait_for 20 grep -q 'coord.server_lost' "$T/coordA.log" || fail "the leader did not detect the loss"
wait_for 10 grep -q 'waiting for a new or standby server' "$T/coordA.log" ||
    fail "the leader did not wait for a server"
cluster_kill coordA KILL
wait_for 10 grep -q 'coord.leader' "$T/coordB.log" || fail "the follower did not take over"
wait_for 10 grep -q 'continuing the recovery of server 0 from phase placing' "$T/coordB.log" ||
    fail "the follower did not pick up the recovery"
cluster_spawn s0b "$B/flr-server" --zk "$ZK" --job $job --id 0 --session-timeout 2000
wait_for 20 grep -q 'coord.server_recovered' "$T/coordB.log" || fail "the follower did not finish the recovery"
cluster_wait coordB 300 || fail "the new leader did not finish the job"
[ "$CLUSTER_RC" -eq 0 ] || fail "the new leader exited with $CLUSTER_RC"
exits_ok 30 w0 w1 s1 s0b
tr -d ' \n' <"$T/$job.json" | grep -q '"failures":\[{' || fail "the report lacks the failure"
echo "PASS"
