#pragma once
// The per-element Philox4x32-10 noise code, shared by the CPU kernels (philox_kernels.cpp) and the CUDA
// kernel (philox_cuda.cu): the same source on both sides, compiled without FMA contraction on both
// (-ffp-contract=off, --fmad=false), with no libm call but the correctly rounded sqrt, so that a draw is the
// same bits on the CPU and the GPU. Free of LibTorch.

#include <cmath>
#include <cstdint>
#include <cstring>

#include "philox_kernels.h"

#ifdef __CUDACC__
#define FLATMIN_INLINE __host__ __device__ __forceinline__
#else
// The per-element functions must be inlined into the CPU loops, or nothing vectorises.
#define FLATMIN_INLINE inline __attribute__((always_inline))
#endif

namespace flatmin::noise::detail {

FLATMIN_INLINE float as_float(uint32_t bits) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
#endif
}
FLATMIN_INLINE uint32_t as_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
#endif
}

// Correctly rounded on both sides (IEEE sqrt), so the same bits.
FLATMIN_INLINE float sqrt_rn(float x) {
#ifdef __CUDA_ARCH__
  return __fsqrt_rn(x);
#else
  return std::sqrt(x);
#endif
}

struct Words {
  uint32_t w0, w1, w2, w3;
};

// Philox4x32-10 with counter (lo, hi, 0, 0) and key (k0, k1): a keyed bijection, Crush-resistant.
FLATMIN_INLINE Words philox4x32_10(uint64_t block, uint32_t k0, uint32_t k1) {
  uint32_t c0 = static_cast<uint32_t>(block), c1 = static_cast<uint32_t>(block >> 32), c2 = 0, c3 = 0;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t{0xD2511F53u} * c0;
    const uint64_t p1 = uint64_t{0xCD9E8D57u} * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {c0, c1, c2, c3};
}

// log(u) for u in (0, 1]: exponent split plus Cephes' logf polynomial on [√½, √2) (~1 ulp).
FLATMIN_INLINE float log_unit(float u) {
  const uint32_t bits = as_bits(u);
  int32_t e = static_cast<int32_t>(bits >> 23) - 127;
  float m = as_float((bits & 0x7FFFFFu) | 0x3F800000u);
  const int32_t big = static_cast<int32_t>(m > 1.41421356f);  // branch-free: every width vectorises it
  m *= 1.0f - 0.5f * static_cast<float>(big);
  e += big;
  const float x = m - 1.0f, z = x * x;
  float y = 7.0376836292E-2f;
  y = y * x - 1.1514610310E-1f;
  y = y * x + 1.1676998740E-1f;
  y = y * x - 1.2420140846E-1f;
  y = y * x + 1.4249322787E-1f;
  y = y * x - 1.6668057665E-1f;
  y = y * x + 2.0000714765E-1f;
  y = y * x - 2.4999993993E-1f;
  y = y * x + 3.3333331174E-1f;
  y = y * x * z;
  const float fe = static_cast<float>(e);
  y += fe * -2.12194440e-4f;
  y += -0.5f * z;
  return x + y + fe * 0.693359375f;
}

// Uniform in (0, 1] from the top 24 bits.
FLATMIN_INLINE float unit_open_closed(uint32_t w) { return static_cast<float>((w >> 8) + 1) * 0x1p-24f; }

// Box-Muller: two independent N(0,1) from two words. The angle's quadrant comes from the top two bits,
// the rest from polynomials on [0, π/2), with exact branch-free quadrant swaps and sign flips.
FLATMIN_INLINE void box_muller(uint32_t a, uint32_t b, float& z0, float& z1) {
  const float r = sqrt_rn(-2.0f * log_unit(unit_open_closed(a)));
  const uint32_t q = b >> 30;
  const float phi = static_cast<float>((b >> 8) & 0x3FFFFFu) * (0x1p-22f * 1.5707963267948966f);
  const float x2 = phi * phi;
  const float s =
      phi * (1.0f + x2 * (-1.0f / 6 + x2 * (1.0f / 120 + x2 * (-1.0f / 5040 + x2 * (1.0f / 362880 + x2 * (-1.0f / 39916800))))));
  const float c = 1.0f + x2 * (-0.5f + x2 * (1.0f / 24 + x2 * (-1.0f / 720 + x2 * (1.0f / 40320 + x2 * (-1.0f / 3628800 + x2 * (1.0f / 479001600))))));
  const uint32_t swap = 0u - (q & 1u);
  const uint32_t sb = as_bits(s), cb = as_bits(c);
  z0 = r * as_float(((sb & swap) | (cb & ~swap)) ^ (((q ^ (q >> 1)) & 1u) << 31));  // cos(θ)
  z1 = r * as_float(((cb & swap) | (sb & ~swap)) ^ ((q & 2u) << 30));               // sin(θ)
}

// Laplace with variance 1: b = 1/√2, sign from the top bit, magnitude b·(−log u).
FLATMIN_INLINE float laplace(uint32_t w) {
  const float u = static_cast<float>(((w & 0x7FFFFFFFu) >> 7) + 1) * 0x1p-24f;
  return as_float(as_bits(-0.70710678118654752f * log_unit(u)) ^ (w & 0x80000000u));
}

// Uniform on (−√3, √3), symmetric: (2u − 1)·√3 with u on the midpoints of 2^24 cells.
FLATMIN_INLINE float uniform(uint32_t w) {
  return (static_cast<float>(w >> 8) * 0x1p-23f + (0x1p-24f - 1.0f)) * 1.7320508075688772f;
}

FLATMIN_INLINE float rademacher(uint32_t w) { return as_float(0x3F800000u | (w & 0x80000000u)); }

// Binomial(4, ½): the number of ones among the word's top four bits (0 … 4, mean 2, variance 1).
FLATMIN_INLINE float binomial4(uint32_t w) {
  return static_cast<float>(((w >> 28) & 1u) + ((w >> 29) & 1u) + ((w >> 30) & 1u) + (w >> 31));
}

template <Law kLaw>
FLATMIN_INLINE void block_values(uint64_t block, uint32_t k0, uint32_t k1, float& x0, float& x1, float& x2, float& x3) {
  const Words w = philox4x32_10(block, k0, k1);
  if constexpr (kLaw == Law::kGaussian) {
    box_muller(w.w0, w.w1, x0, x1);
    box_muller(w.w2, w.w3, x2, x3);
  } else if constexpr (kLaw == Law::kLaplace) {
    x0 = laplace(w.w0), x1 = laplace(w.w1), x2 = laplace(w.w2), x3 = laplace(w.w3);
  } else if constexpr (kLaw == Law::kUniform) {
    x0 = uniform(w.w0), x1 = uniform(w.w1), x2 = uniform(w.w2), x3 = uniform(w.w3);
  } else if constexpr (kLaw == Law::kBinomial4) {
    x0 = binomial4(w.w0), x1 = binomial4(w.w1), x2 = binomial4(w.w2), x3 = binomial4(w.w3);
  } else {
    x0 = rademacher(w.w0), x1 = rademacher(w.w1), x2 = rademacher(w.w2), x3 = rademacher(w.w3);
  }
}

}  // namespace flatmin::noise::detail
