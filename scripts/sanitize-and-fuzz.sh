#!/usr/bin/env bash
# Builds flatmin with clang + AddressSanitizer + UndefinedBehaviorSanitizer in build-asan/, runs the unit
# tests under them, then fuzzes the readers (IDX, checkpoint, CIFAR, tensor file, image) for <seconds> each
# (default 60).
# Any sanitizer report, crash, hang (>10 s per input) or unexpected exception fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
packages=(clang libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DFLATMIN_FUZZ=ON -DFLATMIN_BUILD_BENCHMARKS=OFF -DFLATMIN_BUILD_APPS=OFF > build-asan.log
cmake --build build-asan -j"$(nproc)" >> build-asan.log || { tail -50 build-asan.log; exit 1; }

# LibTorch itself is not instrumented; its one-time static allocations are not ours to report.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_odr_violation=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# One process per test binary (ctest's one per test case pays LibTorch's start-up under ASan ~130 times).
for t in build-asan/tests/test_*; do
  [ -f "$t" ] && [ -x "$t" ] || continue   # skips CMake's *.dir folders
  echo "sanitize: $t"
  "$t" --gtest_brief=1 --gtest_filter='-EndToEnd.*' || { echo "sanitize: $t failed"; exit 1; }
done

corpus=build-asan/fuzz-corpus
build-asan/fuzz/make_seeds "$corpus/idx" "$corpus/checkpoint" "$corpus/cifar" "$corpus/tensors" "$corpus/image"
for target in idx checkpoint cifar tensors image; do
  echo "fuzz: $target for ${seconds}s"
  corpora=("$corpus/$target")
  # Inputs that once crashed a reader are replayed first (new finds go to the first directory only).
  [ -d "fuzz/regressions/$target" ] && corpora+=("fuzz/regressions/$target")
  build-asan/fuzz/fuzz_$target -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="build-asan/fuzz-$target-" "${corpora[@]}" 2>&1 | tail -n 40
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "fuzz: $target failed (the input: build-asan/fuzz-$target-crash-*)"; exit 1; }
done
echo "sanitize-and-fuzz: passed"
