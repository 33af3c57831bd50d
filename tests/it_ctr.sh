#!/usr/bin/env bash
# The CTR path end to end: flr-datagen writes a synthetic Criteo-format data set with a
# known ground-truth model, and sparse logistic regression trained on 2 servers x 2 workers
# comes close to the ground-truth model's AUC on the same test rows (the full 1M-row
# demo gets within 0.02; this small run gets a looser bar).
#
# Then the sparse rows a lost server held, under recovery = none: the replacement starts
# its shards empty, and the report counts as lost the rows the lost server's shards held as
# the coordinator last saw them (it asks every serving server for them every 2 s, without
# waiting for the answer).
. "$FLR_SRCDIR/tests/lib.sh"
echo "op-$RANDOM$RANDOM$RANDOM" >"$T/token" # operator commands (kill-server) need it

"$B/flr-datagen" --rows 60000 --test-rows 10000 --seed 3 --out-dir "$T/ctr" \
    >"$T/datagen.log" 2>&1 || fail "flr-datagen failed"
for f in train.tsv test.tsv truth.json; do
    [ -s "$T/ctr/$f" ] || fail "flr-datagen did not write $f"
done
# Criteo format: label, 13 integer columns, 26 categorical columns.
cols=$(head -n 1 "$T/ctr/train.tsv" | awk -F'\t' '{ print NF }')
[ "$cols" -eq 40 ] || fail "train.tsv has $cols columns, expected 40"

run_job ctr 2 2 "--model ctr --consistency bsp" \
    "--epochs 2 --batch 256 --train $T/ctr/train.tsv --test $T/ctr/test.tsv --truth $T/ctr/truth.json"
auc=$(json_num "$T/ctr.json" test_auc)
truth=$(json_num "$T/ctr.json" truth_auc)
echo "ctr: test AUC $auc, ground-truth model AUC $truth"
[ -n "$auc" ] && [ -n "$truth" ] || fail "report lacks test_auc or truth_auc"
ge "$auc" "$(awk -v t="$truth" 'BEGIN { print t - 0.06 }')" || fail "AUC $auc is not within 0.06 of $truth"

job=ctr-none
cluster_spawn "$job-coord" "$B/flr-coordinator" --zk "$ZK" --job $job --servers 2 --workers 2 \
    --model ctr --consistency asp --recovery none --launcher local --server-logs "$T" \
    --report "$T/$job.json" --http-token-file "$T/token" --session-timeout 2000
for i in 0 1; do
    cluster_spawn "$job-w$i" "$B/flr-worker" --zk "$ZK" --job $job --id $i --epochs 6 --batch 32 \
        --train "$T/ctr/train.tsv" --evaluate no --session-timeout 2000
done
# Past the first row poll (2 s and an answer) before the kill.
wait_for 120 sh -c "'$B/flrctl' --zk '$ZK' --job $job status --json 2>/dev/null |
    jq -e '[.workers[].clock] | min >= 50' >/dev/null" || fail "$job: training did not get going"
sleep 2.5
"$B/flrctl" --zk "$ZK" --job $job --token-file "$T/token" kill-server 0 >"$T/$job-kill.log" 2>&1 ||
    fail "$job: flrctl kill-server failed"
cluster_wait "$job-coord" 300 || fail "$job: coordinator did not finish"
[ "$CLUSTER_RC" -eq 0 ] || fail "$job: coordinator exited with $CLUSTER_RC"
exits_ok 60 "$job-w0" "$job-w1"
lost=$(jq '[.failures[].rows_lost] | add' "$T/$job.json")
n=$(jq '.failures | length' "$T/$job.json")
echo "$job: $n failure, $lost sparse rows lost"
[ "$n" -eq 1 ] || fail "$job: expected one failure in the report, found $n"
[ "$lost" -gt 100 ] || fail "$job: the report counts $lost rows lost, not the sparse rows the server held"
echo "PASS"
