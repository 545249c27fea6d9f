#pragma once
/// Weight-noise laws and σ schedules of Noise Stability Optimization (NSO paper, §3 and Remark 3.1).
/// Every law has mean 0 and per-coordinate standard deviation σ, which is what the Hessian-trace
/// penalty σ²/2·Tr∇²f assumes.

#include <cstdint>
#include <string>

#include <ATen/Tensor.h>
#include <torch/arg.h>

namespace flatmin::noise {

enum class NoiseLaw {
  kGaussian,    ///< σ·N(0, 1)
  kLaplace,     ///< Laplace(0, b = σ/√2)
  kUniform,     ///< U(−√3σ, √3σ)
  kRademacher,  ///< ±σ with probability ½ each (the paper's mean-zero "Binomial")
  /// σ·Binomial(4, ½): values 0, σ, …, 4σ, std σ but mean 2σ — the "binomial" of the NSO authors' code.
  /// Not mean-zero, as the theory requires: offered under this explicit name to test what that law does.
  kBinomial4,
};

/// "gaussian" | "laplace" | "uniform" | "rademacher" (alias "binomial") | "binomial4"; throws
/// flatmin::Error otherwise.
NoiseLaw parse_noise_law(const std::string& name);
std::string to_string(NoiseLaw law);
/// Whether the law has mean zero (and is symmetric): every law but binomial4.
bool is_mean_zero(NoiseLaw law);

/// Counter-based draws (Philox4x32-10, the generator of cuRAND and JAX): element i of the draw keyed by
/// `key` is a fixed function of (key, i), in the row-major order of the tensor's shape. So a draw is
///  - the same bits for any thread count, any SIMD width (SSE2 / AVX2 / AVX-512) and any x86-64 machine;
///  - reproducible from its key alone: U can be regenerated instead of stored, a resumed run draws
///    exactly what the uninterrupted one would have, and processes agree on U without communicating.
/// The Gaussian tail is cut at 5.8σ (probability 1e-8), the price of 24-bit uniforms.
/// Throws flatmin::Error when σ is negative or not finite.
///
/// out ← σ·x (x ~ law with mean 0, variance 1).
void fill_noise_(at::Tensor& out, NoiseLaw law, double sigma, uint64_t key);
/// out ← base + σ·x, in one pass (out may be base itself). Shapes must match.
void add_noise_(at::Tensor& out, const at::Tensor& base, NoiseLaw law, double sigma, uint64_t key);

/// The key of draw `draw` of step `step` for parameter tensor `tensor`, in the stream of `seed`:
/// distinct arguments give independent draws.
uint64_t noise_key(uint64_t seed, uint64_t step, uint64_t draw, uint64_t tensor);

enum class ScheduleKind {
  kConstant,     ///< σ every epoch
  kLinear,       ///< σ_e = σ·e/(W−1) for e < W, then σ (starts at 0)
  kExponential,  ///< σ_e = exp(linspace(log 1e-5, log σ, W))[e] for e < W, then σ
};

/// "constant" | "linear" | "exp"; throws flatmin::Error otherwise.
ScheduleKind parse_schedule_kind(const std::string& name);
std::string to_string(ScheduleKind kind);

/// σ as a function of the epoch. The paper warms up over the whole run (warmup_epochs 0 = all epochs).
struct SigmaSchedule {
  /* implicit */ SigmaSchedule(double sigma = 0.01) : sigma_(sigma) {}
  TORCH_ARG(double, sigma);
  TORCH_ARG(ScheduleKind, kind) = ScheduleKind::kConstant;
  TORCH_ARG(int64_t, warmup_epochs) = 0;

 public:
  /// σ for 0-based `epoch` of a run of `total_epochs`.
  double at(int64_t epoch, int64_t total_epochs) const;
  /// Throws flatmin::Error when σ < 0 or not finite, or warmup_epochs < 0.
  void validate() const;
};

}  // namespace flatmin::noise
