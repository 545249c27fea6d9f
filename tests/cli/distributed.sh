#!/usr/bin/env bash
# One run in two processes (flatmin launch, c10d over Gloo on loopback):
#  1. perturbation-parallel NSO gives one process's run (final test loss to float tolerance);
#  2. data-parallel SGD and SAM (2 × B/2) give the one-process run with batch B;
#  3. `launch -- geometry` shares Hutchinson's probes and gives one process's trace estimate;
#  4. killing one rank stops the other within a bounded time, naming the rank; the last checkpoint is intact
#     and `--resume` finishes the run bitwise equal to an uninterrupted two-process run.
# Usage: distributed.sh <flatmin binary> <scratch dir>
set -uo pipefail
flatmin=$1 work=$2
rm -rf "$work"
mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
base=(--model mlp --width 32 --per-class 60 --val-size 100 --test-size 300 --batch-size 32 --threads 1
      --progress lines --train-eval-size 200 --lr-schedule constant --seed 5)
args=("${base[@]}" --epochs 2)
summary() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1/summary.json" "$2"; }
close() {  # |a − b| ≤ tol·max(1, |a|)
  python3 -c "import sys; a, b, t = map(float, sys.argv[1:]); sys.exit(0 if abs(a - b) <= t * max(1, abs(a)) else 1)" "$1" "$2" "$3"
}

run() {  # run NAME flatmin-args...: stdout+stderr to NAME.log, fails loudly
  local name=$1; shift
  timeout 300 "$flatmin" "$@" > "$work/$name.log" 2>&1
  local status=$?
  [ "$status" -eq 0 ] || { cat "$work/$name.log"; fail "$name exited with $status"; }
}

# 1. Perturbation-parallel NSO.
run nso-1 train "${args[@]}" --method nso --out "$work/nso-1"
run nso-2p launch --nproc 2 -- train "${args[@]}" --method nso --parallel perturbation --out "$work/nso-2p"
a=$(summary "$work/nso-1" final_test_loss) b=$(summary "$work/nso-2p" final_test_loss)
close "$a" "$b" 1e-5 || fail "perturbation-parallel NSO: test loss $b, one process $a"
[ "$(summary "$work/nso-2p" processes)" = 2 ] || fail "nso-2p: summary.json does not say 2 processes"
[ ! -e "$work/nso-2p/rank1" ] && ! grep -q "epoch" <(grep -v "^flatmin launch" "$work/nso-2p.log" | grep "rank 1") \
  || fail "rank 1 wrote or printed"
echo "ok: perturbation-parallel NSO, 2 processes: test loss $b, one process $a"

# 1b. Hutchinson's probes shared by two processes: one process's estimate.
geo=(--checkpoint "$work/nso-1" --measures trace --examples 300 --max-probes 24 --min-probes 24 --threads 1 --progress lines)
run geo-1 geometry "${geo[@]}" --out "$work/geo-1.json"
run geo-2 launch --nproc 2 -- geometry "${geo[@]}" --out "$work/geo-2.json"
trace() { python3 -c "import json,sys; t=json.load(open(sys.argv[1]))['trace']; print(t['estimate'], t['std_error'], t['probes'])" "$1"; }
[ "$(trace "$work/geo-1.json")" = "$(trace "$work/geo-2.json")" ] \
  || fail "geometry: 2 processes give trace $(trace "$work/geo-2.json"), one process $(trace "$work/geo-1.json")"
echo "ok: Hutchinson on 2 processes: trace, standard error, probes = $(trace "$work/geo-2.json"), as one process"

# 2. Data-parallel: each rank half of every batch of 32.
for method in sgd sam; do
  run "$method-1" train "${args[@]}" --method "$method" --out "$work/$method-1"
  run "$method-2d" launch --nproc 2 -- train "${args[@]}" --method "$method" --parallel data --out "$work/$method-2d"
  a=$(summary "$work/$method-1" final_test_loss) b=$(summary "$work/$method-2d" final_test_loss)
  close "$a" "$b" 1e-4 || fail "data-parallel $method: test loss $b, one process with the whole batch $a"
  echo "ok: data-parallel $method, 2 × 16: test loss $b, 1 × 32: $a"
done

# 4. Kill rank 1 mid-run; the launcher must stop within the bound and name it; resume finishes the run.
long=("${base[@]}" --epochs 6 --checkpoint-every 10 --keep-checkpoints 3 --dist-timeout 20)
run full launch --nproc 2 -- train "${long[@]}" --method nso --parallel perturbation --out "$work/full"
"$flatmin" launch --nproc 2 --grace 10 -- train "${long[@]}" --method nso --parallel perturbation \
  --out "$work/killed" > "$work/killed.log" 2>&1 &
launcher=$!
for _ in $(seq 1 6000); do
  compgen -G "$work/killed/checkpoints/step-*.ckpt" > /dev/null && break
  sleep 0.01
done
rank1=""
for pid in $(pgrep -P "$launcher"); do
  tr '\0' '\n' < "/proc/$pid/environ" 2> /dev/null | grep -qx "RANK=1" && rank1=$pid
done
[ -n "$rank1" ] || { cat "$work/killed.log"; fail "rank 1 not found (the run ended before the kill?)"; }
killed_at=$(date +%s)
kill -9 "$rank1"
timeout 60 tail --pid="$launcher" -f /dev/null || fail "the launcher did not stop within 60 s of rank 1's death"
wait "$launcher"
status=$?
stopped_in=$(( $(date +%s) - killed_at ))
[ "$status" -ne 0 ] || fail "the launcher exited 0 after a rank was killed"
grep -q "rank 1 (pid $rank1) was killed by signal 9" "$work/killed.log" || { cat "$work/killed.log"; fail "rank 1 not named"; }
[ -f "$work/killed/summary.json" ] && fail "the killed run finished anyway: the kill proved nothing"
left=$(ls "$work/killed/checkpoints" | tail -n 1)
run resumed launch --nproc 2 -- train --resume "$work/killed" --progress lines
cmp "$work/full/model.ckpt" "$work/killed/model.ckpt" || fail "the resumed run's weights differ from the uninterrupted run's"
echo "ok: rank 1 killed: the launcher stopped in ${stopped_in} s with status $status, naming it;" \
     "resumed from $left: weights bitwise equal to the uninterrupted run"
