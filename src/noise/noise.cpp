#include "flatmin/noise/noise.h"

#include <cmath>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "flatmin/core/error.h"
#include "philox_kernels.h"

#ifdef FLATMIN_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace flatmin::noise {

NoiseLaw parse_noise_law(const std::string& name) {
  if (name == "gaussian" || name == "normal") return NoiseLaw::kGaussian;
  if (name == "laplace") return NoiseLaw::kLaplace;
  if (name == "uniform") return NoiseLaw::kUniform;
  if (name == "rademacher" || name == "binomial") return NoiseLaw::kRademacher;
  if (name == "binomial4") return NoiseLaw::kBinomial4;
  throw Error("unknown noise law '" + name + "' (valid: gaussian, laplace, uniform, rademacher, binomial4)");
}

bool is_mean_zero(NoiseLaw law) { return law != NoiseLaw::kBinomial4; }

std::string to_string(NoiseLaw law) {
  switch (law) {
    case NoiseLaw::kGaussian: return "gaussian";
    case NoiseLaw::kLaplace: return "laplace";
    case NoiseLaw::kUniform: return "uniform";
    case NoiseLaw::kRademacher: return "rademacher";
    case NoiseLaw::kBinomial4: return "binomial4";
  }
  return "?";
}

namespace {

// Blocks of 4 elements per parallel task: ~64k elements, enough to amortise the thread hand-off.
constexpr int64_t kGrainBlocks = 1 << 14;

detail::Law kernel_law(NoiseLaw law) {
  switch (law) {
    case NoiseLaw::kGaussian: return detail::Law::kGaussian;
    case NoiseLaw::kLaplace: return detail::Law::kLaplace;
    case NoiseLaw::kUniform: return detail::Law::kUniform;
    case NoiseLaw::kRademacher: return detail::Law::kRademacher;
    case NoiseLaw::kBinomial4: return detail::Law::kBinomial4;
  }
  return detail::Law::kGaussian;
}

// out ← base + σ·x on contiguous CPU float/double storage (base may be undefined).
void fill_contiguous(at::Tensor& out, const at::Tensor& base, NoiseLaw law, double sigma, uint64_t key) {
  const int64_t n = out.numel();
  const int64_t blocks = (n + 3) / 4;
  const detail::Law kernel = kernel_law(law);
  if (out.scalar_type() == at::kFloat) {
    float* o = out.data_ptr<float>();
    const float* b = base.defined() ? base.data_ptr<float>() : nullptr;
    at::parallel_for(0, blocks, kGrainBlocks, [&](int64_t begin, int64_t end) {
      detail::philox_fill_f32(o, b, n, begin, end, kernel, static_cast<float>(sigma), key);
    });
  } else {
    double* o = out.data_ptr<double>();
    const double* b = base.defined() ? base.data_ptr<double>() : nullptr;
    at::parallel_for(0, blocks, kGrainBlocks, [&](int64_t begin, int64_t end) {
      detail::philox_fill_f64(o, b, n, begin, end, kernel, sigma, key);
    });
  }
}

#ifdef FLATMIN_WITH_CUDA
// The CUDA kernel on LibTorch's current stream: no host round trip, the CPU kernels' bits. Other dtypes and
// layouts are drawn into a contiguous float32 tensor on the device, then copied.
void draw_on_cuda(at::Tensor& out, const at::Tensor& base, NoiseLaw law, double sigma, uint64_t key) {
  const c10::cuda::CUDAGuard guard(out.device());
  void* stream = c10::cuda::getCurrentCUDAStream(out.device().index()).stream();
  const bool direct = out.is_contiguous() && (out.scalar_type() == at::kFloat || out.scalar_type() == at::kDouble) &&
                      (!base.defined() || (base.device() == out.device() && base.is_contiguous() &&
                                           base.scalar_type() == out.scalar_type()));
  at::Tensor target = direct ? out : at::empty(out.sizes(), out.options().dtype(at::kFloat));
  const at::Tensor source = direct && base.defined() ? base : at::Tensor();
  const char* error = nullptr;
  if (target.scalar_type() == at::kFloat) {
    error = detail::philox_fill_cuda_f32(target.data_ptr<float>(), source.defined() ? source.data_ptr<float>() : nullptr,
                                         target.numel(), kernel_law(law), static_cast<float>(sigma), key, stream);
  } else {
    error = detail::philox_fill_cuda_f64(target.data_ptr<double>(),
                                         source.defined() ? source.data_ptr<double>() : nullptr, target.numel(),
                                         kernel_law(law), sigma, key, stream);
  }
  check(error == nullptr, std::string("noise: the CUDA kernel did not start: ") + (error ? error : ""));
  if (direct) return;
  if (base.defined()) out.copy_(base + target.to(out.scalar_type()));
  else out.copy_(target);
}
#endif

void draw(at::Tensor& out, const at::Tensor& base, NoiseLaw law, double sigma, uint64_t key) {
  check(sigma >= 0 && std::isfinite(sigma), "noise sigma must be finite and >= 0, got " + std::to_string(sigma));
  check(out.defined(), "noise: output tensor is undefined");
  check(!base.defined() || base.sizes() == out.sizes(), "noise: base and output shapes differ");
  const bool direct = out.device().is_cpu() && out.is_contiguous() &&
                      (out.scalar_type() == at::kFloat || out.scalar_type() == at::kDouble) &&
                      (!base.defined() || (base.device().is_cpu() && base.is_contiguous() &&
                                           base.scalar_type() == out.scalar_type() &&
                                           !out.is_alias_of(base)));  // the kernel needs distinct buffers
  if (direct) {
    fill_contiguous(out, base, law, sigma, key);
    return;
  }
#ifdef FLATMIN_WITH_CUDA
  if (out.is_cuda()) {
    draw_on_cuda(out, base, law, sigma, key);
    return;
  }
#endif
  // Other devices, dtypes and layouts: draw the same values on the CPU in row-major order, then copy.
  at::Tensor tmp = at::empty(out.sizes(), at::TensorOptions().dtype(at::kFloat));
  fill_contiguous(tmp, at::Tensor(), law, sigma, key);
  tmp = tmp.to(out.options());
  if (base.defined()) out.copy_(base + tmp);
  else out.copy_(tmp);
}

}  // namespace

void fill_noise_(at::Tensor& out, NoiseLaw law, double sigma, uint64_t key) { draw(out, at::Tensor(), law, sigma, key); }

void add_noise_(at::Tensor& out, const at::Tensor& base, NoiseLaw law, double sigma, uint64_t key) {
  check(base.defined(), "add_noise_: base tensor is undefined");
  draw(out, base, law, sigma, key);
}

uint64_t noise_key(uint64_t seed, uint64_t step, uint64_t draw, uint64_t tensor) {
  // Chained SplitMix64 finalisers: every argument changes every bit of the key.
  auto mix = [](uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  };
  uint64_t k = mix(seed + 0x9E3779B97F4A7C15ULL);
  k = mix(k ^ (step + 0x632BE59BD9B4E019ULL));
  k = mix(k ^ (draw + 0x8CB92BA72F3D8DD7ULL));
  return mix(k ^ (tensor + 0xD1B54A32D192ED03ULL));
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
