#pragma once
// Philox4x32-10 counter-based noise kernels (Salmon, Moraes, Dror, Shaw 2011, "Parallel random numbers:
// as easy as 1, 2, 3"), free of LibTorch so that they compile with their own flags: every x86 SIMD width
// computes bit-identical values (no FMA contraction, no libm calls, branch-free selects).

#include <cstdint>

namespace flatmin::noise::detail {

enum class Law : int { kGaussian = 0, kLaplace = 1, kUniform = 2, kRademacher = 3, kBinomial4 = 4 };

/// Writes elements of a draw of n values: out[i] = base[i] + scale·x_i (base may be null: out[i] = scale·x_i),
/// where x_i has mean 0 and variance 1 under `law` and depends only on (key, i). Philox block b yields
/// elements b, b+Q, b+2Q, b+3Q with Q = ceil(n/4); this call does blocks [block_begin, block_end).
/// out and base must not overlap.
void philox_fill_f32(float* out, const float* base, int64_t n, int64_t block_begin, int64_t block_end, Law law,
                     float scale, uint64_t key);
void philox_fill_f64(double* out, const double* base, int64_t n, int64_t block_begin, int64_t block_end, Law law,
                     double scale, uint64_t key);

/// The same draws written by a CUDA kernel on `stream` (a cudaStream_t), all n values, asynchronously:
/// bit-identical to the CPU kernels. Device pointers; base may be null or equal to out (elementwise).
/// Compiled only where CUDA is (FLATMIN_WITH_CUDA). Returns a CUDA error string, or nullptr on success.
const char* philox_fill_cuda_f32(float* out, const float* base, int64_t n, Law law, float scale, uint64_t key,
                                 void* stream);
const char* philox_fill_cuda_f64(double* out, const double* base, int64_t n, Law law, double scale, uint64_t key,
                                 void* stream);

}  // namespace flatmin::noise::detail
