#include "flatmin/noise/noise.h"

#include <cmath>

#include <ATen/ATen.h>

#include "flatmin/core/error.h"

namespace flatmin::noise {

NoiseLaw parse_noise_law(const std::string& name) {
  if (name == "gaussian" || name == "normal") return NoiseLaw::kGaussian;
  if (name == "laplace") return NoiseLaw::kLaplace;
  if (name == "uniform") return NoiseLaw::kUniform;
  if (name == "rademacher" || name == "binomial") return NoiseLaw::kRademacher;
  throw Error("unknown noise law '" + name + "' (valid: gaussian, laplace, uniform, rademacher)");
}

std::string to_string(NoiseLaw law) {
  switch (law) {
    case NoiseLaw::kGaussian: return "gaussian";
    case NoiseLaw::kLaplace: return "laplace";
    case NoiseLaw::kUniform: return "uniform";
    case NoiseLaw::kRademacher: return "rademacher";
  }
  return "?";
}

void fill_noise_(at::Tensor& out, NoiseLaw law, double sigma, c10::optional<at::Generator> generator) {
  check(sigma >= 0 && std::isfinite(sigma), "noise sigma must be finite and >= 0, got " + std::to_string(sigma));
  if (sigma == 0) {
    out.zero_();
    return;
  }
  switch (law) {
    case NoiseLaw::kGaussian:
      out.normal_(0.0, sigma, generator);
      return;
    case NoiseLaw::kUniform: {
      const double half_width = std::sqrt(3.0) * sigma;
      out.uniform_(-half_width, half_width, generator);
      return;
    }
    case NoiseLaw::kRademacher:
      // {0,1} → {−σ, σ}: 0·2σ − σ and 2σ − σ are both exact in floating point.
      out.bernoulli_(0.5, generator).mul_(2.0 * sigma).sub_(sigma);
      return;
    case NoiseLaw::kLaplace: {
      // Inverse CDF: u ~ U(−½, ½), x = −b·sgn(u)·log(1 − 2|u|), b = σ/√2 (variance 2b² = σ²).
      out.uniform_(-0.5, 0.5, generator);
      const at::Tensor sign = out.sign();
      out.abs_().mul_(-2.0).log1p_().mul_(sign).mul_(-sigma / std::sqrt(2.0));
      return;
    }
  }
}

ScheduleKind parse_schedule_kind(const std::string& name) {
  if (name == "constant") return ScheduleKind::kConstant;
  if (name == "linear") return ScheduleKind::kLinear;
  if (name == "exp" || name == "exponential") return ScheduleKind::kExponential;
  throw Error("unknown sigma schedule '" + name + "' (valid: constant, linear, exp)");
}

std::string to_string(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::kConstant: return "constant";
    case ScheduleKind::kLinear: return "linear";
    case ScheduleKind::kExponential: return "exp";
  }
  return "?";
}

void SigmaSchedule::validate() const {
  check(std::isfinite(sigma_) && sigma_ >= 0, "sigma must be finite and >= 0, got " + std::to_string(sigma_));
  check(warmup_epochs_ >= 0, "sigma warm-up epochs must be >= 0, got " + std::to_string(warmup_epochs_));
}

double SigmaSchedule::at(int64_t epoch, int64_t total_epochs) const {
  const int64_t warmup = warmup_epochs_ > 0 ? warmup_epochs_ : total_epochs;
  if (kind_ == ScheduleKind::kConstant || warmup <= 1 || epoch >= warmup - 1) return sigma_;
  const double t = static_cast<double>(std::max<int64_t>(epoch, 0)) / static_cast<double>(warmup - 1);
  if (kind_ == ScheduleKind::kLinear) return sigma_ * t;
  if (sigma_ == 0) return 0.0;
  const double lo = std::log(1e-5), hi = std::log(sigma_);
  return std::exp(lo + (hi - lo) * t);
}

}  // namespace flatmin::noise
