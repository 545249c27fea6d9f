#!/usr/bin/env bash
# flatmin train → flatmin geometry --measures all on a tiny run: every measure runs and lands in the JSON,
# the summary is printed, and the same seeds give the same numbers.
# Usage: cli_end_to_end.sh <flatmin executable> <scratch directory>
set -eu
cli=$1
dir=$2
rm -rf "$dir"
mkdir -p "$dir"
fail() { echo "FAIL: $*"; [ -f "$dir/log" ] && cat "$dir/log"; exit 1; }
"$cli" train --per-class 30 --val-size 100 --test-size 300 --epochs 1 --width 16 --out "$dir/run" --progress quiet \
  || fail "train"
args=(geometry --checkpoint "$dir/run" --measures all --examples 200 --batch-size 64 --max-probes 20 --top-k 2
      --lanczos-iterations 20 --density-iterations 10 --hutchpp-hvps 9 --gap-draws 4 --sigmas 0.01,0.02
      --ratio-examples 10 --pac-examples 5 --pac-probes 2)
"$cli" "${args[@]}" --out "$dir/a.json" --progress lines > "$dir/log" 2>&1 || fail "geometry"
"$cli" "${args[@]}" --out "$dir/b.json" --progress quiet || fail "geometry (second run)"
for key in gradient trace normalized_trace hutchpp eigenvalues density perturbation_gap approximation_ratio pac_bayes; do
  grep -q "^  \"$key\": {" "$dir/a.json" || fail "no \"$key\" in the JSON"
done
for line in "Hessian trace (Hutchinson)" "top eigenvalues (Lanczos)" "perturbation gap" "PAC-Bayes" "wrote $dir/a.json"; do
  grep -qF "$line" "$dir/log" || fail "no '$line' in the summary"
done
# Identical apart from timings, the start time and the measured heap bytes.
strip() { grep -v -E '"(seconds|build_seconds|started|bytes)":' "$1"; }
diff <(strip "$dir/a.json") <(strip "$dir/b.json") > "$dir/diff" || { cat "$dir/diff"; fail "two runs with the same seeds differ"; }
echo "ok"
