// Compiled with -O3 -fno-math-errno -ffp-contract=off (see CMakeLists.txt): the loops vectorise, and
// without FMA contraction the SSE2, AVX2 and AVX-512 clones round identically, so a draw is the same bits
// on every x86-64 machine.
#include "philox_element.h"

namespace flatmin::noise::detail {
namespace {

// GCC only: clang 14 lacks the arch= forms in target_clones (it then builds the baseline loop).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(FLATMIN_NO_TARGET_CLONES)
#define FLATMIN_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FLATMIN_SIMD_CLONES
#endif

template <bool kHasBase, typename T>
FLATMIN_INLINE void store(T* __restrict out, const T* __restrict base, int64_t i, T scale, float x) {
  if constexpr (kHasBase) out[i] = base[i] + scale * static_cast<T>(x);
  else out[i] = scale * static_cast<T>(x);
}

// One law and one base mode per instantiation: straight-line loop bodies that vectorise.
template <Law kLaw, bool kHasBase, typename T>
FLATMIN_SIMD_CLONES void fill_law(T* __restrict out, const T* __restrict base, int64_t n, int64_t begin, int64_t end,
                                  T scale, uint32_t k0, uint32_t k1) {
  const int64_t q = (n + 3) / 4;
  const int64_t full = n - 3 * q;  // blocks below this write all four quarters
  const int64_t split = end < full ? end : (begin > full ? begin : full);
  // The four quarters and base never overlap (the caller guarantees out != base): restrict lets the
  // loop vectorise without run-time overlap checks.
  T* __restrict out1 = out + q;
  T* __restrict out2 = out + 2 * q;
  T* __restrict out3 = out + 3 * q;
  const T* __restrict base1 = kHasBase ? base + q : nullptr;
  const T* __restrict base2 = kHasBase ? base + 2 * q : nullptr;
  const T* __restrict base3 = kHasBase ? base + 3 * q : nullptr;
  for (int64_t b = begin; b < split; ++b) {
    float x0, x1, x2, x3;
    block_values<kLaw>(static_cast<uint64_t>(b), k0, k1, x0, x1, x2, x3);
    store<kHasBase>(out, base, b, scale, x0);
    store<kHasBase>(out1, base1, b, scale, x1);
    store<kHasBase>(out2, base2, b, scale, x2);
    store<kHasBase>(out3, base3, b, scale, x3);
  }
  for (int64_t b = split; b < end; ++b) {  // the short last quarter: same values, bounds-checked
    float x0, x1, x2, x3;
    block_values<kLaw>(static_cast<uint64_t>(b), k0, k1, x0, x1, x2, x3);
    store<kHasBase>(out, base, b, scale, x0);
    if (b + q < n) store<kHasBase>(out1, base1, b, scale, x1);
    if (b + 2 * q < n) store<kHasBase>(out2, base2, b, scale, x2);
    if (b + 3 * q < n) store<kHasBase>(out3, base3, b, scale, x3);
  }
}

template <Law kLaw, typename T>
void fill_with_law(T* out, const T* base, int64_t n, int64_t begin, int64_t end, T scale, uint32_t k0, uint32_t k1) {
  if (base) fill_law<kLaw, true>(out, base, n, begin, end, scale, k0, k1);
  else fill_law<kLaw, false>(out, base, n, begin, end, scale, k0, k1);
}

template <typename T>
void fill(T* out, const T* base, int64_t n, int64_t begin, int64_t end, Law law, T scale, uint64_t key) {
  const uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  switch (law) {
    case Law::kGaussian: return fill_with_law<Law::kGaussian>(out, base, n, begin, end, scale, k0, k1);
    case Law::kLaplace: return fill_with_law<Law::kLaplace>(out, base, n, begin, end, scale, k0, k1);
    case Law::kUniform: return fill_with_law<Law::kUniform>(out, base, n, begin, end, scale, k0, k1);
    case Law::kRademacher: return fill_with_law<Law::kRademacher>(out, base, n, begin, end, scale, k0, k1);
    case Law::kBinomial4: return fill_with_law<Law::kBinomial4>(out, base, n, begin, end, scale, k0, k1);
  }
}

}  // namespace

void philox_fill_f32(float* out, const float* base, int64_t n, int64_t block_begin, int64_t block_end, Law law,
                     float scale, uint64_t key) {
  fill(out, base, n, block_begin, block_end, law, scale, key);
}

void philox_fill_f64(double* out, const double* base, int64_t n, int64_t block_begin, int64_t block_end, Law law,
                     double scale, uint64_t key) {
  fill(out, base, n, block_begin, block_end, law, scale, key);
}

}  // namespace flatmin::noise::detail
