#!/usr/bin/env bash
# A server is SIGKILLed during BSP training (the coordinator's own drill, --kills 1, with
# the local launcher).  The coordinator notices the lost session, marks its shards
# RECOVERING at a new epoch, starts a replacement, hands it the shards, and training
# finishes.  Under recovery = none the report counts the rows the replacement had to
# re-initialise.  Nothing is left running afterwards.
. "$FLR_SRCDIR/tests/lib.sh"

need_fashion_mnist
job=skill
cluster_spawn coord "$B/flr-coordinator" --zk "$ZK" --job $job --servers 2 --workers 3 \
    --model softmax --consistency bsp --recovery none --report "$T/$job.json" --launcher local --kills 1 \
    --session-timeout 2000 --server-logs "$T"
for i in 0 1 2; do
    cluster_spawn "w$i" "$B/flr-worker" --zk "$ZK" --job $job --id $i --epochs 3 --batch 32 \
        --session-timeout 2000
done
wait_for 60 grep -q 'coord.server_killed' "$T/coord.log" || fail "the drill did not kill a server"
wait_for 20 grep -q 'coord.server_lost' "$T/coord.log" || fail "the lost server was not detected"
wait_for 20 grep -q 'coord.server_recovered' "$T/coord.log" || fail "the shards did not come back"
cluster_wait coord 300 || fail "training did not finish after the server was lost"
[ "$CLUSTER_RC" -eq 0 ] || fail "coordinator exited with $CLUSTER_RC"
exits_ok 30 w0 w1 w2
python3 - "$T/$job.json" <<'PY' || fail "report's failures entry is wrong"
import json, sys
r = json.load(open(sys.argv[1]))
f = r["failures"]
assert len(f) == 1, f
f = f[0]
for k in ("server", "shards", "detect_ms", "recover_ms", "rows_rebuilt", "rows_lost", "recovery"):
    assert k in f, k
assert f["recovery"] == "none" and f["rows_rebuilt"] == 0, f
assert isinstance(f["detect_ms"], int) and f["detect_ms"] > 0, f
assert f["recover_ms"] >= f["detect_ms"], f
assert f["rows_lost"] > 0 and len(f["shards"]) == 4, f
print("failure: server %d, shards %s, detect %d ms, recover %d ms, rows lost %d"
      % (f["server"], f["shards"], f["detect_ms"], f["recover_ms"], f["rows_lost"]))
PY
grep -q 'srv.load' "$T/server0.log" || fail "no server log from the local launcher"
[ "$(grep -c 'srv.start' "$T/server0.log")" -eq 2 ] || fail "server 0 was not started twice"
sleep 0.5
strays=$(cluster_strays)
[ -z "$strays" ] || fail "processes left after the job: $strays"
acc=$(json_num "$T/$job.json" test_accuracy)
echo "training finished after the kill: test accuracy $acc"
ge "$acc" 0.70 || fail "accuracy $acc below 0.70"
echo "PASS"
