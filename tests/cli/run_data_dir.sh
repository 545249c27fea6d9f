#!/usr/bin/env bash
# A run trained with --data-dir D is measured on D: flatmin geometry and flatmin landscape read the run's own
# data directory from its config.json (here with FLATMIN_DATA_DIR pointing nowhere), and an explicit
# --data-dir still wins.
# Usage: run_data_dir.sh <flatmin executable> <scratch directory>
set -eu
cli=$1
dir=$2
rm -rf "$dir"
mkdir -p "$dir/fm"
fail() { echo "FAIL: $*"; exit 1; }
src=${FLATMIN_DATA_DIR:-/usr/share/datasets/fashion-mnist}
cp "$src"/*-ubyte* "$dir/fm/"
"$cli" train --data-dir "$dir/fm" --per-class 10 --val-size 50 --test-size 50 --epochs 1 --method sgd \
  --out "$dir/run" --progress quiet || fail "train"
export FLATMIN_DATA_DIR="$dir/nowhere"
"$cli" geometry --checkpoint "$dir/run" --measures grad --examples 50 --out "$dir/g.json" --progress quiet \
  || fail "geometry did not find the run's data"
grep -q "\"dir\": \"$dir/fm\"" "$dir/g.json" || fail "geometry.json names another data directory"
"$cli" landscape --checkpoint "$dir/run" --points 3 --examples 50 --formats svg --progress quiet --out "$dir/ls" \
  || fail "landscape did not find the run's data"
if "$cli" geometry --checkpoint "$dir/run" --data-dir "$dir/elsewhere" --measures grad --out "$dir/g2.json" \
  --progress quiet 2> "$dir/err"; then
  fail "an explicit --data-dir was ignored"
fi
grep -q "elsewhere" "$dir/err" || fail "message: $(cat "$dir/err")"
echo "ok"
