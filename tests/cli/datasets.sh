#!/usr/bin/env bash
# Every dataset kind end to end through the CLI, on small files in the real formats (make_datasets): train
# (CIFAR with augmentation), measure the checkpoint on its own data (the default data directory pointing
# nowhere), a sweep and its report over a tensor dataset with a TorchScript model, and one-line errors.
# Usage: datasets.sh <flatmin executable> <make_datasets executable> <fixtures directory> <scratch directory>
set -eu
cli=$1
make_datasets=$2
fixtures=$3
dir=$4
rm -rf "$dir"
mkdir -p "$dir"
fail() { echo "FAIL: $*"; exit 1; }
"$make_datasets" "$dir/data" || fail "make_datasets"
export FLATMIN_DATA_DIR="$dir/nowhere" FLATMIN_CACHE_DIR="$dir/cache"
common=(--epochs 2 --val-size 10 --batch-size 16 --eval-batch-size 50 --progress quiet --method nso)
for spec in "cifar10 cnn --augment" "cifar100 cnn --cifar100-labels coarse" "folder cnn --image-size 16" \
            "tensors mlp" "idx cnn"; do
  set -- $spec
  kind=$1 model=$2
  shift 2
  "$cli" train --dataset "$kind" --data-dir "$dir/data/$kind" --model "$model" "$@" "${common[@]}" --out "$dir/$kind" \
    > "$dir/$kind.log" 2>&1 || fail "train on $kind: $(tail -3 "$dir/$kind.log")"
  grep -q "\"kind\": \"$kind\"" "$dir/$kind/config.json" || fail "$kind: config.json does not record the dataset"
  [ "$(wc -l < "$dir/$kind/metrics.csv")" -eq 3 ] || fail "$kind: expected 2 epochs in metrics.csv"
  "$cli" geometry --checkpoint "$dir/$kind" --measures grad --examples 20 --out "$dir/$kind/g.json" --progress quiet \
    > "$dir/$kind.geometry.log" 2>&1 || fail "geometry on $kind: $(tail -3 "$dir/$kind.geometry.log")"
  grep -q "\"dataset\": \"$kind\"" "$dir/$kind/g.json" || fail "$kind: geometry measured other data"
done
grep -q '"labels": "coarse"' "$dir/cifar100/config.json" || fail "cifar100: coarse labels not recorded"
"$cli" export "$dir/cifar100" --torchscript "$dir/c100.pt" > /dev/null || fail "export of the cifar100 run"
grep -q '"num_classes": 20' "$dir/c100.pt.json" || fail "cifar100 coarse: not 20 classes"
[ -n "$(ls "$dir/cache")" ] || fail "the image folder was not cached"

# A sweep over a tensor dataset (4 classes of 1×12×12) with a TorchScript model built for it, then its report.
/usr/bin/python3 - "$dir/model.pt" <<'PY' || fail "python could not script the model"
import sys, torch
net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
torch.jit.script(net).save(sys.argv[1])
PY
cat > "$dir/sweep.toml" <<TOML
name = "tensors"
seeds = [0]
[train]
dataset = "tensors"
data-dir = "$dir/data/tensors"
model-file = "$dir/model.pt"
epochs = 2
val-size = 10
batch-size = 16
[methods.sgd]
method = "sgd"
[methods.nso]
method = "nso"
[measure]
measures = "trace"
max-probes = 10
examples = 20
TOML
"$cli" sweep "$dir/sweep.toml" --out "$dir/sweep" --jobs 1 > "$dir/sweep.log" 2>&1 || fail "sweep: $(tail -5 "$dir/sweep.log")"
"$cli" report "$dir/sweep" --no-plots > "$dir/report.log" 2>&1 || fail "report: $(tail -5 "$dir/report.log")"
grep -q "nso" "$dir/sweep/report/results.md" || fail "the report lacks the runs"

# One line for a missing directory and for a model that does not fit the data.
if "$cli" train --dataset cifar10 --progress quiet --out "$dir/bad" 2> "$dir/err"; then fail "cifar10 without a directory"; fi
grep -q "^error: --dataset cifar10 needs --data-dir$" "$dir/err" || fail "message: $(cat "$dir/err")"
if "$cli" train --dataset cifar10 --data-dir "$dir/data/cifar10" --model-file "$fixtures/tiny_cnn.pt" --val-size 10 \
  --progress quiet --out "$dir/bad" 2> "$dir/err"; then fail "a 1-channel model trained on colour images"; fi
grep -q "^error: .*tiny_cnn.pt: does not accept inputs \[2, 3, 32, 32\] (.*channels" "$dir/err" \
  || fail "message: $(cat "$dir/err")"
[ "$(wc -l < "$dir/err")" -eq 1 ] || fail "more than one line: $(cat "$dir/err")"
echo "ok"
