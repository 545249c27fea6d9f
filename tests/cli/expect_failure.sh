#!/usr/bin/env bash
# Runs a command that must fail cleanly: non-zero exit, output matching <regex>, one line starting
# "error:" or a CLI11 usage message, and no crash or LibTorch backtrace.
# Usage: expect_failure.sh <regex> <command> [args...]
set -u
regex=$1; shift
output=$("$@" 2>&1); status=$?
fail() { echo "FAIL: $*"; echo "--- output of: $*"; echo "$output"; exit 1; }
[ "$status" -ne 0 ] || fail "exit status 0"
[ "$status" -lt 128 ] || fail "killed by a signal (status $status)"
echo "$output" | grep -Eq -- "$regex" || fail "output does not match /$regex/"
echo "$output" | grep -Eq "terminate called|Exception raised from|Segmentation|Aborted" && fail "crash or backtrace"
echo "$output" | grep -Eq "frame #[0-9]+|<unknown function>|\(0x[0-9a-f]+ in " && fail "a LibTorch stack frame in the message"
echo "ok: status $status: $(echo "$output" | head -n 1)"
