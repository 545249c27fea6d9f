#!/bin/sh
# Loss landscapes of several trained models along the same seeded filter-normalised directions (CR-SAM's
# Figure 4): 1-D (one line per model, 41 points on 1,000 training examples), 2-D (contours and a heat map per
# model, 21 × 21 points on 500 examples) and the line from the first model to the last.
#
#   scripts/landscapes.sh OUT LABEL=RUN_DIR LABEL=RUN_DIR ...
#   scripts/landscapes.sh docs/results/landscapes sgd=runs/finetune/runs/fm5-100/sgd/default/seed0 \
#       nso=runs/finetune/runs/fm5-100/nso/sigma=0.012/seed0
#
# Every landscape resumes where it stopped when the script is run again with the same arguments.
set -eu
out=${1:?usage: landscapes.sh OUT LABEL=RUN_DIR ...}
shift
[ $# -ge 1 ] || { echo "usage: landscapes.sh OUT LABEL=RUN_DIR ..." >&2; exit 2; }
cli=${FLATMIN:-build/flatmin}
models="" labels="" first="" last="" first_label=""
for pair in "$@"; do
  label=${pair%%=*} dir=${pair#*=}
  [ -f "$dir/model.ckpt" ] || { echo "error: $dir/model.ckpt not found" >&2; exit 1; }
  models="$models${models:+,}$dir" labels="$labels${labels:+,}$label"
  [ -n "$first" ] || { first=$dir; first_label=$label; }
  last=$dir
done
mkdir -p "$out"
"$cli" landscape --checkpoint "$models" --labels "$labels" --points 41 --range -1,1 --examples 1000 --progress lines \
  --out "$out/1d"
"$cli" landscape --checkpoint "$models" --labels "$labels" --dims 2 --points 21 --range -1,1 --examples 500 \
  --progress lines --out "$out/2d"
[ "$first" = "$last" ] || "$cli" landscape --checkpoint "$first" --labels "$first_label" --to "$last" --points 41 \
  --examples 1000 --progress lines --out "$out/line"
echo "landscapes in $out"
