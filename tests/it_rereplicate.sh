#!/usr/bin/env bash
# A worker's copies leave with it, and the servers copy again what only it held.
#
# Recovery flr, k = 2 (every row needs a copy on one live worker), ASP, 2 servers and 3
# workers of the oracle model.  Workers 0 and 1 train over and over on a few samples, so
# they touch a few hundred of the sparse table's 1024 rows; worker 2 trains once on many
# samples, touching nearly all of them, and leaves.  The rows only worker 2 held copies of
# fall short; the servers' replication pass sends them to workers 0 and 1.  Then server 0
# is killed.  Worker 2's log left with it, so its rebuild can find worker 2's updates only
# in the copies the pass made: without them those rows would come back at their initial
# value.  The final parameters must equal the sums of everything every worker pushed.
. "$FLR_SRCDIR/tests/lib.sh"
echo "op-$RANDOM$RANDOM$RANDOM" >"$T/token" # kill-server is an operator command

"$B/flr-datagen" --rows 6000 --test-rows 100 --seed 7 --out-dir "$T/ctr" \
    >"$T/datagen.log" 2>&1 || fail "flr-datagen failed"
head -n 30 "$T/ctr/train.tsv" >"$T/few.tsv"

job=rerep
cluster_spawn "$job" "$B/flr-coordinator" --zk "$ZK" --job $job --servers 2 --workers 3 \
    --model oracle --optimizer sgd --lr 1 --consistency asp --recovery flr --k 2 \
    --launcher local --server-logs "$T" --report "$T/$job.json" --session-timeout 2000 \
    --http-token-file "$T/token"
for i in 0 1; do
    cluster_spawn "$job-w$i" "$B/flr-worker" --zk "$ZK" --job $job --id $i --train "$T/few.tsv" \
        --epochs 2500 --batch 4 --evaluate no --oracle-out "$T/$job" --session-timeout 2000
done
cluster_spawn "$job-w2" "$B/flr-worker" --zk "$ZK" --job $job --id 2 --train "$T/ctr/train.tsv" \
    --epochs 1 --batch 16 --evaluate no --oracle-out "$T/$job" --session-timeout 2000

cluster_wait "$job-w2" 120 || fail "worker 2 did not finish"
[ "$CLUSTER_RC" -eq 0 ] || fail "worker 2 exited with $CLUSTER_RC"
for s in 0 1; do
    wait_for 30 grep -q 'srv.worker_removed worker 2 ' "$T/server$s.log" ||
        fail "server $s did not drop worker 2"
done
sleep 3 # fifteen replication passes (one every 200 ms)
for i in 0 1; do
    cluster_alive "$job-w$i" || fail "worker $i finished before the kill: give it more epochs"
done
"$B/flrctl" --zk "$ZK" --job $job --token-file "$T/token" kill-server 0 >"$T/kill.log" 2>&1 ||
    fail "flrctl kill-server failed"

cluster_wait "$job" 300 || fail "the job did not finish"
[ "$CLUSTER_RC" -eq 0 ] || fail "the coordinator exited with $CLUSTER_RC"
exits_ok 60 "$job-w0" "$job-w1"
python3 - "$T/$job.json" <<'PY' || fail "the report's failures are wrong"
import json, sys
f = json.load(open(sys.argv[1]))["failures"]
assert len(f) == 1 and f[0]["recovery"] == "flr" and f[0]["rows_lost"] == 0, f
print("server %d lost: %d rows rebuilt, %d lost" % (f[0]["server"], f[0]["rows_rebuilt"], f[0]["rows_lost"]))
PY
oracle_check "$T/$job" || fail "the final parameters are not the sums of the pushes"
echo "worker 2 pushed to $(awk '$1 == 1 { r[$2] = 1 } END { print length(r) }' "$T/$job.w2.pushed") sparse rows"
grep -h 'srv.rebuilt' "$T"/server0.log | tail -n 2 | sed 's/.*NOTE //'
echo "PASS"
