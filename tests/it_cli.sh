#!/usr/bin/env bash
# Every program answers --help and --version, rejects bad flags, bad values and bad config
# files with one line naming the problem and exit code 2, and gives up with a clear
# message when the job it should join does not exist.
. "$FLR_SRCDIR/tests/lib.sh"

# expect_err CODE PATTERN CMD...: CMD exits with CODE and its stderr matches PATTERN.
expect_err() {
    local code=$1 pat=$2 rc=0
    shift 2
    "$@" >"$T/out" 2>"$T/err" || rc=$?
    [ "$rc" -eq "$code" ] || fail "$* exited $rc, expected $code: $(cat "$T/err")"
    grep -qE -- "$pat" "$T/err" || fail "$*: stderr '$(cat "$T/err")' does not match '$pat'"
    echo "ok: $* -> $(head -n 1 "$T/err")"
}

for p in flr-server flr-worker flr-coordinator flr-datagen; do
    "$B/$p" --help >"$T/out" || fail "$p --help failed"
    grep -q -- '--help' "$T/out" || fail "$p --help does not list --help"
    "$B/$p" --version | grep -q '[0-9]' || fail "$p --version prints no version"
    expect_err 2 "no-such-flag" "$B/$p" --no-such-flag
done
grep -q -- '--zk' <("$B/flr-server" --help) || fail "flr-server --help does not list --zk"
expect_err 2 "unknown model 'nope'" "$B/flr-coordinator" --model nope
expect_err 2 "consistency.*bsp, ssp, asp" "$B/flr-coordinator" --consistency eventual
expect_err 2 "epochs.*x" "$B/flr-worker" --epochs x
expect_err 2 "workers" "$B/flr-coordinator" --workers 0
expect_err 2 "recovery" "$B/flr-coordinator" --recovery sometimes

printf 'zk = 127.0.0.1:1\n# a comment\nsession-timout = 3000\n' >"$T/bad.conf"
expect_err 2 "bad.conf:3.*session-timout" "$B/flr-server" --config "$T/bad.conf"

# The config dump reads back to the same configuration.
"$B/flr-server" --id 7 --zk "$ZK" --dump-config >"$T/a.conf"
"$B/flr-server" --config "$T/a.conf" --dump-config >"$T/b.conf"
cmp -s "$T/a.conf" "$T/b.conf" || fail "--dump-config does not round-trip"
grep -q '^id *= *7' "$T/a.conf" || fail "--dump-config lost --id"

# Joining a job that does not exist fails with a message, within the start timeout.
expect_err 1 "no spec|did not start|not" "$B/flr-worker" --zk "$ZK" --job ghost --start-timeout 500
expect_err 1 "no spec" "$B/flr-server" --zk "$ZK" --job ghost --start-timeout 500
echo "PASS"
