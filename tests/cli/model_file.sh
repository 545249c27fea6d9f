#!/usr/bin/env bash
# A PyTorch user's model through the CLI: a TorchScript fixture trains (NSO, its frozen parameter kept),
# is measured (Hessian trace through TorchScript's double backward), and exported; Python's torch.jit.load opens
# the export. A model that does not fit the data is refused before training, in one line.
# Usage: model_file.sh <flatmin executable> <fixtures directory> <scratch directory>
set -eu
cli=$1
fixtures=$2
dir=$3
rm -rf "$dir"
mkdir -p "$dir"
fail() { echo "FAIL: $*"; exit 1; }
common=(--per-class 10 --val-size 50 --test-size 50 --epochs 1 --progress quiet)
"$cli" train --model-file "$fixtures/tiny_bn_net.pt" --method nso "${common[@]}" --out "$dir/run" || fail "train"
grep -q '"name": "torchscript"' "$dir/run/config.json" || fail "config.json does not name the TorchScript model"
# Every method trains it (BatchNorm buffers, a frozen parameter).
for method in sgd wp-sgd sam usam asam rsam bsam crsam; do
  "$cli" train --model-file "$fixtures/tiny_bn_net.pt" --method "$method" --per-class 2 --val-size 10 --test-size 20 \
    --epochs 1 --batch-size 10 --progress quiet --out "$dir/$method" > "$dir/$method.log" 2>&1 \
    || fail "$method: $(tail -2 "$dir/$method.log")"
done
# Every geometry measure, through TorchScript's double backward (PAC-Bayes's W0: the file's weights).
"$cli" geometry --checkpoint "$dir/run" --measures all --examples 50 --max-probes 4 --min-probes 2 --top-k 1 \
  --lanczos-iterations 8 --density-iterations 8 --gap-draws 4 --sigmas 0.01 --ratio-examples 10 --ratio-steps 2 \
  --pac-examples 5 --pac-probes 2 --out "$dir/g.json" --progress quiet || fail "geometry"
for key in trace hutchpp eigenvalues density perturbation_gap approximation_ratio pac_bayes; do
  grep -q "\"$key\"" "$dir/g.json" || fail "no $key in geometry.json"
done
"$cli" export "$dir/run" --torchscript "$dir/model.pt" > "$dir/export.txt" || fail "export"
/usr/bin/python3 - "$dir/model.pt" <<'PY' || fail "python could not use the export"
import json, sys, torch
m = torch.jit.load(sys.argv[1]); m.eval()
meta = json.load(open(sys.argv[1] + ".json"))
assert abs(m.scale.item() - 1.0) == 0, "the frozen parameter moved"
x = (torch.rand(4, 1, 28, 28) - meta["normalize"]["mean"][0]) / meta["normalize"]["std"][0]
assert m(x).shape == (4, 10)
PY
# Three classes for a ten-logit model: refused before any step.
if "$cli" train --model-file "$fixtures/tiny_cnn.pt" --classes 0,1,2 "${common[@]}" --out "$dir/bad" 2> "$dir/err"; then
  fail "a model with 10 logits trained on 3 classes"
fi
grep -q "^error: .*tiny_cnn.pt: maps inputs \[2, 1, 28, 28\] to \[2, 10\], not to logits \[2, 3\]" "$dir/err" \
  || fail "message: $(cat "$dir/err")"
[ "$(wc -l < "$dir/err")" -eq 1 ] || fail "more than one line: $(cat "$dir/err")"
echo "ok"
