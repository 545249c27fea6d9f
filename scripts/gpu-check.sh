#!/usr/bin/env bash
# On a GPU machine whose python3 holds a CUDA PyTorch (no Debian packages needed): builds flatmin against
# that PyTorch's LibTorch, runs the GPU tests (tests/training/test_gpu.cpp and the device tests), a CLI
# train + geometry on the GPU, and the GPU benchmark beside a same-run PyTorch baseline. Needs gpu-bundle/
# (scripts/gpu-bundle.sh, made on a Debian machine). Results and logs go to $OUT (default gpu-results/).
# Meant to take under 5 minutes on one H200 with 16 cores (not yet timed: no GPU was lent when it was
# written); FLATMIN_GPU_QUICK=1 skips the benchmark.
#   scripts/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=${FLATMIN_BUNDLE:-$PWD/gpu-bundle}
out=${OUT:-$PWD/gpu-results}
mkdir -p "$out"
log() { echo "[$(date +%T)] $*" | tee -a "$out/gpu-check.log"; }
[ -d "$bundle" ] || { echo "gpu-check: $bundle is missing: run scripts/gpu-bundle.sh on a Debian machine"; exit 2; }
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)') || exit 2
python3 - > "$out/machine.txt" <<'PY'
import torch
print("torch", torch.__version__, "| CUDA", torch.version.cuda, "| cuDNN", torch.backends.cudnn.version())
for i in range(torch.cuda.device_count()):
    print("gpu", i, torch.cuda.get_device_name(i), "capability", torch.cuda.get_device_capability(i))
PY
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >> "$out/machine.txt" 2>&1
cat "$out/machine.txt"

log "configure"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$bundle;$torch_prefix" \
  -DPython3_EXECUTABLE="$(command -v python3)" \
  -DFLATMIN_GTEST_SOURCE="$bundle/src/googletest" > "$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; exit 1; }
grep -E "flatmin:|Torch|CUDA" "$out/configure.log" | tee -a "$out/gpu-check.log"
log "build"
cmake --build build-gpu -j"$(nproc)" --target flatmin_cli test_noise test_training bench_step flatmin_python > "$out/build.log" 2>&1 \
  || { grep -E "error|Error" "$out/build.log" | head -40; exit 1; }
log "build warnings (deprecations included): $(grep -c 'warning:' "$out/build.log")"
grep -E "warning:" "$out/build.log" | sort | uniq -c | sort -rn | head -20 > "$out/warnings.txt"

export FLATMIN_DATA_DIR="$bundle/fashion-mnist"
status=0
log "tests"
build-gpu/tests/test_noise > "$out/test_noise.log" 2>&1 || status=1
tail -3 "$out/test_noise.log" | tee -a "$out/gpu-check.log"
build-gpu/tests/test_training --gtest_filter='Gpu.*:Device.*:Autocast.*:FiniteCheck.*:ClipGradNorm.*:MemoryCounter.*' \
  > "$out/test_gpu.log" 2>&1 || status=1
grep -E "^\[  (PASSED|FAILED|SKIPPED) |OK \]|FAILED \]" "$out/test_gpu.log" | tee -a "$out/gpu-check.log"

log "Python module on the pip torch: an NSO and a SAM step on CUDA tensors, a trace"
PYTHONPATH=build-gpu/python python3 - > "$out/python.log" 2>&1 <<'PY' || status=1
import torch, torch.nn.functional as F, flatmin
model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 10)).cuda()
x, y = torch.randn(256, 32, device="cuda"), torch.randint(0, 10, (256,), device="cuda")
for cls, kw in ((flatmin.optim.NSO, dict(sigma=0.01, k=2)), (flatmin.optim.SAM, dict(rho=0.05))):
    opt = cls(model.parameters(), torch.optim.SGD, lr=0.1, **kw)
    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss
    print(cls.__name__, float(opt.step(closure)))
t = flatmin.geometry.hessian_trace(model, lambda m, b: F.cross_entropy(m(b[0]), b[1]), (x, y), tol=0.05)
print("trace", t)
PY
tail -3 "$out/python.log" | tee -a "$out/gpu-check.log"

log "CLI on the GPU"
build-gpu/flatmin train --device cuda --model cnn --method nso --epochs 2 --per-class 1000 --out "$out/run" \
  --progress lines > "$out/train.log" 2>&1 || status=1
tail -4 "$out/train.log" | tee -a "$out/gpu-check.log"
build-gpu/flatmin geometry --checkpoint "$out/run" --device cuda --measures grad,trace --examples 1000 \
  --progress lines > "$out/geometry.log" 2>&1 || status=1
tail -3 "$out/geometry.log" | tee -a "$out/gpu-check.log"

if [ "${FLATMIN_GPU_QUICK:-0}" != 1 ]; then
  log "benchmark: ResNet-18 width 64, 3x32x32, SGD momentum; eager PyTorch vs flatmin, same run"
  for config in "fp32 nchw" "fp32 channels-last" "bf16 channels-last"; do
    set -- $config
    base="$out/baseline-$1-$2.json"
    python3 benchmarks/python_baseline.py --device cuda --models resnet18 --batches 128,512 --methods sgd,nso,sam \
      --rounds 5 --precision "$1" --layout "$2" > "$base" 2>> "$out/bench.log" || status=1
    build-gpu/benchmarks/bench_step --device cuda --models resnet18 --width 64 --batches 128,512 --methods nso,sam \
      --rounds 5 --no-noise --precision "$1" --layout "$2" --baseline "$base" 2>&1 | tee -a "$out/bench.txt" || status=1
  done
fi
log "done: status $status"
exit $status
