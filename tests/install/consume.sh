#!/usr/bin/env bash
# Installs flatmin into a scratch prefix, builds examples/consumer against it with find_package(flatmin),
# and runs it.  Usage: consume.sh <source dir> <build dir>
set -euo pipefail
src=$1 build=$2
work="$build/install-test"
rm -rf "$work"
cmake --install "$build" --prefix "$work/prefix" > "$work.log" 2>&1 || { cat "$work.log"; exit 1; }
# Through ccache where installed (as flatmin's own build): compiling against LibTorch's headers is most of this
# test's time, and an unchanged installed package then compiles to the cached, identical object.
launcher=()
if command -v ccache > /dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER="ccache")
  export CCACHE_BASEDIR="$work" CCACHE_SLOPPINESS=include_file_mtime,include_file_ctime,time_macros
fi
cmake -S "$src/examples/consumer" -B "$work/consumer" -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" \
  -DCMAKE_PREFIX_PATH="$work/prefix" > "$work.log" 2>&1 || { cat "$work.log"; exit 1; }
cmake --build "$work/consumer" > "$work.log" 2>&1 || { cat "$work.log"; exit 1; }
"$work/consumer/consumer"

# One version everywhere (set once, in CMakeLists.txt's project()): the CMake package, the installed CLI's
# --version and a run's config.json; and the package states its license.
package_dir=$(dirname "$(find "$work/prefix" -name flatminConfigVersion.cmake | head -n 1)")
package=$(sed -n 's/^set(PACKAGE_VERSION "\(.*\)")$/\1/p' "$package_dir/flatminConfigVersion.cmake")
grep -q '^set(flatmin_LICENSE "BSD-3-Clause")$' "$package_dir/flatminConfig.cmake" || { echo "FAIL: no license in the package"; exit 1; }
cli=$("$work/prefix/bin/flatmin" --version)
case "$cli" in "flatmin $package (commit "*) ;; *) echo "FAIL: --version '$cli' is not version $package"; exit 1;; esac
"$work/prefix/bin/flatmin" train --method sgd --epochs 1 --per-class 5 --val-size 10 --test-size 20 \
  --train-eval-size 10 --progress quiet --no-save-model --out "$work/run" > "$work.log" 2>&1 || { cat "$work.log"; exit 1; }
grep -qF "\"flatmin\": \"$cli\"" "$work/run/config.json" || { echo "FAIL: config.json does not record '$cli'"; exit 1; }
# The installed Python module (where the package's Python finds it under the prefix) says the same.
site=$(dirname "$(find "$work/prefix" -name _flatmin*.so | head -n 1)")
if [ -n "$site" ] && [ "$site" != . ]; then
  python=$(PYTHONPATH="$(dirname "$site")" /usr/bin/python3 -c "import flatmin; print(flatmin.version())")
  [ "$python" = "$cli" ] || { echo "FAIL: the installed Python module says '$python'"; exit 1; }
fi
echo "one version: $cli"
