#pragma once
/// Process-wide runtime settings that decide speed: intra-op threads (LibTorch and OpenBLAS, which keeps
/// its own pool), and glibc malloc thresholds (multi-pass steps otherwise map and unmap their large
/// activation buffers on every pass).

#include <cstdint>
#include <string>

namespace flatmin {

struct ThreadCounts {
  int torch_intra_op = 0;  ///< at::get_num_threads()
  int blas = 0;            ///< OpenBLAS's pool (0 = not OpenBLAS / unknown)
};

/// Sets LibTorch's intra-op thread count and, when the BLAS is OpenBLAS, its own pool too.
/// n must be >= 1. Returns what is in effect afterwards.
ThreadCounts set_num_threads(int n);

/// The counts in effect now.
ThreadCounts num_threads();

/// Raises glibc's mmap and trim thresholds so that large, repeatedly allocated activation buffers stay
/// in the heap instead of being mapped and unmapped (page-faulted) on every forward/backward pass.
/// Returns false where it could not be applied (not glibc).
bool tune_malloc_for_training();

/// flatmin's version, "0.1.0" (set in CMakeLists.txt's project(), nowhere else).
std::string version();
/// The git commit the library was built from, 12 hex digits, "-dirty" with uncommitted changes; "unknown"
/// outside a git checkout.
std::string build_commit();
/// "flatmin 0.1.0 (commit 0123456789ab, LibTorch 1.13.0)": what --version prints and every config.json,
/// geometry.json and report records.
std::string version_string();

}  // namespace flatmin
