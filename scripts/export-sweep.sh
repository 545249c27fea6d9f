#!/usr/bin/env bash
# Copies what a sweep's report needs (no checkpoints, no models, no logs) from ROOT to DEST, then writes the
# report there, so that the results can be committed and `flatmin report DEST` redraws them.
#   scripts/export-sweep.sh runs/finetune docs/results/finetune
set -euo pipefail
root=${1:?usage: export-sweep.sh ROOT DEST}
dest=${2:?usage: export-sweep.sh ROOT DEST}
flatmin=${FLATMIN:-$(dirname "$0")/../build/flatmin}
[ -f "$root/manifest.json" ] || { echo "error: $root/manifest.json: not a sweep root" >&2; exit 1; }
mkdir -p "$dest"
cp "$root/manifest.json" "$root/experiment.json" "$dest/"
[ -f "$root/selection.json" ] && cp "$root/selection.json" "$dest/"
# Only the manifest's runs: a run a widened grid or an older plan left behind is not part of the results.
grep -o '"dir": *"[^"]*"' "$root/manifest.json" | sed 's/.*"\([^"]*\)"$/\1/' | sort -u |
  while IFS= read -r dir; do
    [ -d "$root/$dir" ] || continue
    (cd "$root" && find "$dir" -maxdepth 1 \( -name summary.json -o -name metrics.csv -o -name config.json \
       -o -name geometry.json -o -name status.json \) -print0) |
      while IFS= read -r -d '' f; do
        mkdir -p "$dest/$(dirname "$f")"
        cp "$root/$f" "$dest/$f"
      done
  done
"$flatmin" report "$dest"
