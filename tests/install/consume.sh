#!/usr/bin/env bash
# Installs flatmin into a scratch prefix, builds examples/consumer against it with find_package(flatmin),
# and runs it.  Usage: consume.sh <source dir> <build dir>
set -euo pipefail
src=$1 build=$2
work="$build/install-test"
rm -rf "$work"
cmake --install "$build" --prefix "$work/prefix" > "$work.log" 2>&1 || { cat "$work.log"; exit 1; }
cmake -S "$src/examples/consumer" -B "$work/consumer" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" > "$work.log" 2>&1 || { cat "$work.log"; exit 1; }
cmake --build "$work/consumer" > "$work.log" 2>&1 || { cat "$work.log"; exit 1; }
"$work/consumer/consumer"
