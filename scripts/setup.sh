#!/usr/bin/env bash
# Sets up flatmin on Debian bookworm: installs the Debian packages it needs (only those missing; uses sudo
# when not root), then configures and builds in build/.
#   scripts/setup.sh          build the library and the flatmin tool
#   scripts/setup.sh all      build everything, tests included
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake
  libtorch-dev          # LibTorch 1.13 (CPU), found by find_package(Torch)
  libopenblas0-pthread  # without it Debian's reference BLAS makes matrix work ~30x slower
  dataset-fashion-mnist # the bundled default data: /usr/share/datasets/fashion-mnist
  libcli11-dev nlohmann-json3-dev zlib1g-dev
  libtomlplusplus-dev   # experiment files (flatmin sweep)
  libpng-dev libjpeg-dev  # image folders (PNG, JPEG)
  libgloo-dev           # several processes: the Gloo transport's headers for torch.distributed's c10d
  gnuplot-nox           # the plots of flatmin report (svg, pngcairo)
  googletest libgtest-dev libgmock-dev
)
# The tests also open the report's HTML page in a headless browser and decode its screenshot, write test
# images (stb), check that Python's torch.jit.load gives flatmin's logits for an exported model, and test
# the Python module (python3-dev and pybind11-dev build it; pytest runs its tests).
[ "${1:-}" = all ] && packages+=(chromium libstb-dev python3-torch python3-dev pybind11-dev python3-pytest)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

target=flatmin_cli
[ "${1:-}" = all ] && target=all
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)" --target "$target"
