#!/usr/bin/env bash
# The CTR path end to end: flr-datagen writes a synthetic Criteo-format data set with a
# known ground-truth model, and sparse logistic regression trained on 2 servers x 2 workers
# comes close to the ground-truth model's AUC on the same test rows (the full 1M-row
# demo gets within 0.02; this small run gets a looser bar).
. "$FLR_SRCDIR/tests/lib.sh"

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
echo "PASS"
