#!/usr/bin/env bash
# Packs, from this Debian machine, what a GPU machine without Debian packages needs to build and test
# flatmin against its own CUDA LibTorch (a pip torch): CLI11, nlohmann-json and toml++ (headers and CMake
# configs; toml++ header-only), zlib, GoogleTest's sources and the Fashion-MNIST files. Into gpu-bundle/
# (ignored by git; about 35 MB), which scripts/gpu-check.sh finds there.
#   scripts/setup.sh && scripts/gpu-bundle.sh        # then carry gpu-bundle/ to the GPU machine
set -euo pipefail
cd "$(dirname "$0")/.."
b=gpu-bundle
rm -rf "$b"
mkdir -p "$b/include" "$b/lib/cmake/tomlplusplus" "$b/share/cmake" "$b/src" "$b/fashion-mnist"
cp -r /usr/include/CLI /usr/include/nlohmann /usr/include/toml++ /usr/include/zlib.h /usr/include/zconf.h "$b/include/"
cp -r /usr/share/cmake/CLI11 /usr/share/cmake/nlohmann_json "$b/share/cmake/"
# pybind11 (header-only; its CMake config finds the headers relative to itself) for the Python module.
cp -r /usr/include/pybind11 "$b/include/"
mkdir -p "$b/lib/cmake" && cp -r /usr/lib/cmake/pybind11 "$b/lib/cmake/"
cp /usr/lib/x86_64-linux-gnu/libz.a "$b/lib/"
# Debian builds toml++ as a shared library; the bundle uses it header-only (no C++ ABI to match).
cat > "$b/lib/cmake/tomlplusplus/tomlplusplusConfig.cmake" <<'CMAKE'
if(NOT TARGET tomlplusplus::tomlplusplus)
  add_library(tomlplusplus::tomlplusplus INTERFACE IMPORTED)
  get_filename_component(_toml_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
  set_target_properties(tomlplusplus::tomlplusplus PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_toml_prefix}/include")
endif()
set(tomlplusplus_FOUND TRUE)
CMAKE
cp -r /usr/src/googletest "$b/src/googletest"
cp /usr/share/datasets/fashion-mnist/*.gz "$b/fashion-mnist/"
du -sh "$b"
