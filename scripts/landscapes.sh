#!/bin/sh
# Loss landscapes of SGD, SAM, CR-SAM and NSO (CR-SAM's Figure 4): the seed-0 models of a crsam-curvature
# sweep, along the same seeded filter-normalised directions — 1-D (one line per model), 2-D (contours and a
# heat map per model) and the line from SGD's minimum to NSO's — on 1,000 training examples.
#
#   build/flatmin sweep experiments/crsam-curvature.toml --jobs 2
#   scripts/landscapes.sh runs/crsam-curvature docs/results/landscapes
#
# Every landscape resumes where it stopped when the script is run again.
set -eu
root=${1:-runs/crsam-curvature}
out=${2:-docs/results/landscapes}
cli=${FLATMIN:-build/flatmin}
models=""
for m in sgd sam crsam nso; do
  [ -f "$root/runs/$m/default/seed0/model.ckpt" ] || { echo "error: $root/runs/$m/default/seed0/model.ckpt not found (run the sweep first)" >&2; exit 1; }
  models="$models${models:+,}$root/runs/$m/default/seed0"
done
mkdir -p "$out"
"$cli" landscape --checkpoint "$models" --labels sgd,sam,crsam,nso --points 41 --range -1,1 --examples 1000 \
  --progress lines --out "$out/1d"
"$cli" landscape --checkpoint "$models" --labels sgd,sam,crsam,nso --dims 2 --points 21 --range -1,1 --examples 500 \
  --progress lines --out "$out/2d"
"$cli" landscape --checkpoint "$root/runs/sgd/default/seed0" --to "$root/runs/nso/default/seed0" --labels sgd \
  --points 41 --examples 1000 --progress lines --out "$out/sgd-to-nso"
echo "landscapes in $out"
