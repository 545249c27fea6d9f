// The CUDA twin of philox_kernels.cpp: one thread per Philox block, the per-element code of
// philox_element.h, compiled with --fmad=false (CMakeLists.txt) so that every value rounds as on the CPU.
// Free of LibTorch: noise.cpp passes the device pointers and LibTorch's current stream.
#include <cuda_runtime.h>

#include "philox_element.h"

namespace flatmin::noise::detail {
namespace {

template <bool kHasBase, typename T>
__device__ __forceinline__ void store(T* out, const T* base, int64_t i, T scale, float x) {
  if constexpr (kHasBase) out[i] = base[i] + scale * static_cast<T>(x);
  else out[i] = scale * static_cast<T>(x);
}

// Block b writes elements b, b+q, b+2q, b+3q (q = ceil(n/4)), as the CPU loop does. out and base may be the
// same pointer: each element is read before it is written, by the same thread.
template <Law kLaw, bool kHasBase, typename T>
__global__ void fill_kernel(T* out, const T* base, int64_t n, T scale, uint32_t k0, uint32_t k1) {
  const int64_t q = (n + 3) / 4;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < q; b += stride) {
    float x0, x1, x2, x3;
    block_values<kLaw>(static_cast<uint64_t>(b), k0, k1, x0, x1, x2, x3);
    store<kHasBase>(out, base, b, scale, x0);
    if (b + q < n) store<kHasBase>(out, base, b + q, scale, x1);
    if (b + 2 * q < n) store<kHasBase>(out, base, b + 2 * q, scale, x2);
    if (b + 3 * q < n) store<kHasBase>(out, base, b + 3 * q, scale, x3);
  }
}

template <Law kLaw, typename T>
void launch_law(T* out, const T* base, int64_t n, T scale, uint32_t k0, uint32_t k1, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t blocks_needed = ((n + 3) / 4 + kThreads - 1) / kThreads;
  const unsigned grid = static_cast<unsigned>(blocks_needed < 65535 ? blocks_needed : 65535);  // grid-stride
  if (base) fill_kernel<kLaw, true><<<grid, kThreads, 0, stream>>>(out, base, n, scale, k0, k1);
  else fill_kernel<kLaw, false><<<grid, kThreads, 0, stream>>>(out, base, n, scale, k0, k1);
}

template <typename T>
const char* launch(T* out, const T* base, int64_t n, Law law, T scale, uint64_t key, void* stream_ptr) {
  if (n <= 0) return nullptr;
  const uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  switch (law) {
    case Law::kGaussian: launch_law<Law::kGaussian>(out, base, n, scale, k0, k1, stream); break;
    case Law::kLaplace: launch_law<Law::kLaplace>(out, base, n, scale, k0, k1, stream); break;
    case Law::kUniform: launch_law<Law::kUniform>(out, base, n, scale, k0, k1, stream); break;
    case Law::kRademacher: launch_law<Law::kRademacher>(out, base, n, scale, k0, k1, stream); break;
    case Law::kBinomial4: launch_law<Law::kBinomial4>(out, base, n, scale, k0, k1, stream); break;
  }
  const cudaError_t error = cudaGetLastError();  // a launch error; no wait for the kernel
  return error == cudaSuccess ? nullptr : cudaGetErrorString(error);
}

}  // namespace

const char* philox_fill_cuda_f32(float* out, const float* base, int64_t n, Law law, float scale, uint64_t key,
                                 void* stream) {
  return launch(out, base, n, law, scale, key, stream);
}

const char* philox_fill_cuda_f64(double* out, const double* base, int64_t n, Law law, double scale, uint64_t key,
                                 void* stream) {
  return launch(out, base, n, law, scale, key, stream);
}

}  // namespace flatmin::noise::detail
