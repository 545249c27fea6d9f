#!/usr/bin/env bash
# Runs a command that must exit with exactly <status> and print output matching <regex>, without a crash.
# Usage: expect_status.sh <status> <regex> <command> [args...]
set -u
want=$1 regex=$2
shift 2
output=$("$@" 2>&1)
status=$?
fail() { echo "FAIL: $*"; echo "--- output:"; echo "$output"; exit 1; }
[ "$status" -eq "$want" ] || fail "exit status $status, expected $want"
echo "$output" | grep -Eq -- "$regex" || fail "output does not match /$regex/"
echo "$output" | grep -Eq "terminate called|Exception raised from|Segmentation|Aborted" && fail "crash or backtrace"
echo "ok: status $status"
