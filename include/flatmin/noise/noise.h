#pragma once
/// Weight-noise laws and σ schedules of Noise Stability Optimization (NSO paper, §3 and Remark 3.1).
/// Every law has mean 0 and per-coordinate standard deviation σ, which is what the Hessian-trace
/// penalty σ²/2·Tr∇²f assumes.

#include <cstdint>
#include <string>

#include <ATen/Tensor.h>
#include <ATen/core/Generator.h>
#include <c10/util/Optional.h>
#include <torch/arg.h>

namespace flatmin::noise {

enum class NoiseLaw {
  kGaussian,    ///< σ·N(0, 1)
  kLaplace,     ///< Laplace(0, b = σ/√2)
  kUniform,     ///< U(−√3σ, √3σ)
  kRademacher,  ///< ±σ with probability ½ each (the paper's mean-zero "Binomial")
};

/// "gaussian" | "laplace" | "uniform" | "rademacher" (alias "binomial"); throws flatmin::Error otherwise.
NoiseLaw parse_noise_law(const std::string& name);
std::string to_string(NoiseLaw law);

/// Overwrites `out` in place with i.i.d. draws of `law` with standard deviation `sigma` (no allocation
/// of a parameter-sized buffer except for Laplace, which needs one temporary).
/// `generator` = nullopt uses the default generator of out's device.
void fill_noise_(at::Tensor& out, NoiseLaw law, double sigma, c10::optional<at::Generator> generator);

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
