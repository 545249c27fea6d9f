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
