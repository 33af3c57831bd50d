#!/usr/bin/env bash
# Two coordinators for one job: the first leads, the second follows. The leader is
# SIGKILLed while the job runs; the follower takes over within the session timeout plus
# a second, continues the running job from what ZooKeeper records, and writes the report.
. "$FLR_SRCDIR/tests/lib.sh"

need_fashion_mnist
job=lead
cargs=(--zk "$ZK" --job $job --servers 2 --workers 2 --model softmax --report "$T/$job.json"
    --session-timeout 2000)
cluster_spawn coordA "$B/flr-coordinator" "${cargs[@]}"
wait_for 20 grep -q 'coord.leader' "$T/coordA.log" || fail "the first coordinator did not lead"
cluster_spawn coordB "$B/flr-coordinator" "${cargs[@]}"
wait_for 20 grep -q 'coord.follower' "$T/coordB.log" || fail "the second coordinator did not follow"
for i in 0 1; do
    cluster_spawn "s$i" "$B/flr-server" --zk "$ZK" --job $job --id $i
    cluster_spawn "w$i" "$B/flr-worker" --zk "$ZK" --job $job --id $i --epochs 2 --batch 32
done
wait_for 60 grep -q 'coord.job_running' "$T/coordA.log" || fail "job did not start"
grep -q 'coord.leader' "$T/coordB.log" && fail "the follower led while the leader lived"

killed=$(date +%s%N)
cluster_kill coordA KILL
wait_for 10 grep -q 'coord.leader' "$T/coordB.log" || fail "the follower did not take over"
took=$((($(date +%s%N) - killed) / 1000000))
echo "takeover after the leader's SIGKILL: $took ms (session timeout 2000 ms)"
wait_for 10 grep -q 'continuing the running job' "$T/coordB.log" || fail "the new leader did not resume the running job"

cluster_wait coordB 300 || fail "the new leader did not finish the job"
[ "$CLUSTER_RC" -eq 0 ] || fail "the new leader exited with $CLUSTER_RC"
exits_ok 30 w0 w1 s0 s1
acc=$(json_num "$T/$job.json" test_accuracy)
echo "job finished under the new leader: test accuracy $acc"
ge "$acc" 0.78 || fail "accuracy $acc below 0.78"
echo "PASS"
