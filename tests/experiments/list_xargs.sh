#!/usr/bin/env bash
# A sweep run as a cluster would run it — `flatmin sweep --list`, its commands through `xargs -P 2`, listed
# again until nothing is left — ends with the same selection, manifest, metrics and flatness as `--jobs 2`.
# Also: a listed command run twice at once trains its unit once, a finished unit's command is a no-op, and a
# finished root lists nothing.
#   list_xargs.sh FLATMIN WORKDIR EXPERIMENT
set -euo pipefail
cli=$1 work=$2 experiment=$3
rm -rf "$work"
mkdir -p "$work"
# One thread per process on both sides: a run's bits may depend on its thread count.
"$cli" sweep "$experiment" --jobs 2 --threads 1 --progress lines --out "$work/jobs" >"$work/jobs.log" 2>&1 ||
  { echo "sweep --jobs 2 failed:"; tail -20 "$work/jobs.log"; exit 1; }

list() { "$cli" sweep "$experiment" --threads 1 --out "$work/list" --list 2>>"$work/list.err"; }
status=0

# The first unit (the pretraining), started twice at once: one trains it, the other waits for it, both succeed.
first=$(list | head -n 1)
[ -n "$first" ] || { echo "an empty root lists nothing"; exit 1; }
(cd / && sh -c "$first") >"$work/dup1.log" 2>&1 & pid1=$!
(cd / && sh -c "$first") >"$work/dup2.log" 2>&1 & pid2=$!
wait "$pid1" || { echo "a listed command failed:"; cat "$work/dup1.log"; exit 1; }
wait "$pid2" || { echo "the same command, at the same time, failed:"; cat "$work/dup2.log"; exit 1; }
trained=$(cat "$work/dup1.log" "$work/dup2.log" | grep -c 'training ' || true)
[ "$trained" = 1 ] || { echo "a unit run twice at once trained $trained times"; status=1; }
if list | grep -qxF "$first"; then echo "a finished unit is listed again"; status=1; fi

# The cluster's loop: every listed unit, two at a time, then list again.
rounds=0
while units=$(list) && [ -n "$units" ]; do
  rounds=$((rounds + 1))
  [ "$rounds" -le 10 ] || { echo "still listing units after 10 rounds:"; printf '%s\n' "$units"; exit 1; }
  printf '%s\n' "$units" >"$work/round$rounds.txt"
  printf '%s\n' "$units" | xargs -d '\n' -n 1 -P 2 sh -c >>"$work/list.log" 2>&1 ||
    { echo "a unit failed in round $rounds:"; tail -20 "$work/list.log"; exit 1; }
done
echo "the listed units ran in $rounds round(s) after the pretraining: $(cat "$work"/round*.txt | wc -l) units"
[ "$rounds" -ge 2 ] || { echo "the reported seeds were listed with the grid (expected a second round)"; status=1; }

# Finished: nothing listed (exit 0); a finished unit's command changes nothing; a whole sweep has nothing to do.
[ -z "$(list)" ] || { echo "a finished root still lists units"; status=1; }
before=$(md5sum "$work/list/runs/pretrain/seed0/metrics.csv" "$work/list/manifest.json" | cut -d' ' -f1)
(cd / && sh -c "$first") >"$work/again.log" 2>&1 || { echo "a done unit's command failed:"; cat "$work/again.log"; status=1; }
grep -q 'training \|resuming \|measuring ' "$work/again.log" && { echo "a done unit ran again"; status=1; }
[ "$before" = "$(md5sum "$work/list/runs/pretrain/seed0/metrics.csv" "$work/list/manifest.json" | cut -d' ' -f1)" ] ||
  { echo "a done unit's command changed its run or the manifest"; status=1; }

# The units kept the root's files current: the same selection and manifest as the whole sweep wrote.
diff "$work/jobs/selection.json" "$work/list/selection.json" || { echo "selections differ"; status=1; }
# The manifest, but for what differs between any two sweeps: times, the command, the file's path as given.
placed() { grep -Ev '"seconds"|"command"|"file"' "$1"; }
diff <(placed "$work/jobs/manifest.json") <(placed "$work/list/manifest.json") || { echo "manifests differ"; status=1; }
# A whole sweep over the finished root runs nothing and exits 0.
"$cli" sweep "$experiment" --jobs 2 --threads 1 --progress lines --out "$work/list" >"$work/final.log" 2>&1 ||
  { echo "the final sweep failed:"; tail -5 "$work/final.log"; status=1; }
! grep -q '^\[' "$work/final.log" || { echo "the final sweep found units left to run"; status=1; }
# Timing columns (seconds, ms per step) differ between any two runs; everything else must not.
untimed() { awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) keep[i] = ($i !~ /seconds|ms_per_step/) }
                     { line = ""; for (i = 1; i <= NF; i++) if (keep[i]) line = line $i ","; print line }' "$1"; }
# Paths, times and the graph cache's byte count (allocator detail) aside.
unplaced() { grep -Ev 'seconds|"started"|"checkpoint"|"dir"|"bytes"' "$1"; }
diff <(cd "$work/jobs" && find runs -name metrics.csv | sort) <(cd "$work/list" && find runs -name metrics.csv | sort) ||
  { echo "the two roots hold different runs"; status=1; }
runs=0 measured=0
while IFS= read -r csv; do
  dir=${csv%/metrics.csv}
  other=$work/list/${dir#"$work"/jobs/}
  runs=$((runs + 1))
  [ -f "$other/metrics.csv" ] || continue
  diff <(untimed "$csv") <(untimed "$other/metrics.csv") >/dev/null || { echo "metrics differ: ${dir#"$work"/jobs/}"; status=1; }
  if [ -f "$dir/geometry.json" ]; then
    measured=$((measured + 1))
    [ -f "$other/geometry.json" ] || { echo "not measured: $other"; status=1; continue; }
    diff <(unplaced "$dir/geometry.json") <(unplaced "$other/geometry.json") >/dev/null ||
      { echo "flatness differs: ${dir#"$work"/jobs/}"; status=1; }
  fi
done < <(find "$work/jobs/runs" -name metrics.csv | sort)
[ "$runs" -ge 5 ] && [ "$measured" -ge 2 ] || { echo "only $runs runs ($measured measured) compared"; status=1; }
[ "$status" = 0 ] && echo "the listed units through xargs -P 2 equal sweep --jobs 2 ($runs runs, $measured measured)"
exit "$status"
