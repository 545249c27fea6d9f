#!/usr/bin/env bash
# SIGTERM (or SIGINT) lets the current step finish, writes a checkpoint, prints how to resume and exits
# with 130; the resumed run ends bitwise equal to an uninterrupted one.
# Usage: signal_resume.sh <flatmin binary> <scratch dir> <TERM|INT>
set -uo pipefail
flatmin=$1 work=$2 signal=$3
rm -rf "$work"
mkdir -p "$work"
# 2,000 examples: the signal comes after epoch 1, with three epochs of steps still ahead to interrupt.
args=(--per-class 200 --val-size 500 --test-size 500 --epochs 4 --progress lines --train-eval-size 500)
"$flatmin" train "${args[@]}" --out "$work/a" > "$work/a.log" 2>&1 || { cat "$work/a.log"; exit 1; }
"$flatmin" train "${args[@]}" --out "$work/b" > "$work/b.log" 2>&1 &
pid=$!
for _ in $(seq 1 6000); do  # up to 60 s: a loaded machine starts slowly
  grep -q "^epoch 1/4" "$work/b.log" 2> /dev/null && break
  sleep 0.01
done
kill -"$signal" "$pid"
wait "$pid"
status=$?
[ "$status" -eq 130 ] || { echo "FAIL: exit status $status, expected 130"; cat "$work/b.log"; exit 1; }
grep -q "Resume with:  flatmin train --resume $work/b" "$work/b.log" || { echo "FAIL: no resume hint"; cat "$work/b.log"; exit 1; }
"$flatmin" train --resume "$work/b" --progress lines > "$work/b.resume.log" 2>&1 || { cat "$work/b.resume.log"; exit 1; }
cmp "$work/a/model.ckpt" "$work/b/model.ckpt" || { echo "FAIL: final weights differ"; exit 1; }
echo "ok: SIG$signal -> 130, checkpoint, resumed bitwise equal"
