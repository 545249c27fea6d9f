#include "flatmin/core/runtime.h"

#include <dlfcn.h>
#include <malloc.h>

#include <ATen/Parallel.h>
#include <torch/version.h>

#include "flatmin/core/error.h"

namespace flatmin {
namespace {

// OpenBLAS keeps its own thread pool that ignores at::set_num_threads. Look its setters up at run time
// so that flatmin still links (and runs) against another BLAS.
using SetThreadsFn = void (*)(int);
using GetThreadsFn = int (*)();

SetThreadsFn openblas_setter() {
  static auto fn = reinterpret_cast<SetThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  return fn;
}
GetThreadsFn openblas_getter() {
  static auto fn = reinterpret_cast<GetThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return fn;
}

}  // namespace

ThreadCounts set_num_threads(int n) {
  check(n >= 1, "thread count must be >= 1, got " + std::to_string(n));
  at::set_num_threads(n);
  if (auto set = openblas_setter()) set(n);
  return num_threads();
}

ThreadCounts num_threads() {
  ThreadCounts counts;
  counts.torch_intra_op = at::get_num_threads();
  if (auto get = openblas_getter()) counts.blas = get();
  return counts;
}

bool tune_malloc_for_training() {
#if defined(__GLIBC__)
  // 32 MiB is glibc's ceiling for the mmap threshold on 64-bit; setting it explicitly also stops the
  // dynamic threshold from flapping. Freed heap memory is returned to the system only above 1 GiB.
  const bool ok_mmap = mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1;
  const bool ok_trim = mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
  return ok_mmap && ok_trim;
#else
  return false;
#endif
}

std::string version_string() {
  return "flatmin " + version() + " (commit " + build_commit() + ", LibTorch " + TORCH_VERSION + ")";
}

}  // namespace flatmin
