#include "flatmin/core/device.h"

#include <cctype>

#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/nn/module.h>
#include <torch/version.h>

#include "flatmin/core/error.h"

// LibTorch 2.4 replaced the per-device autocast setters (set_enabled, set_cpu_enabled,
// set_autocast_gpu_dtype, ...) by ones taking the device type, and deprecated the old ones.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define FLATMIN_AUTOCAST_BY_DEVICE_TYPE 1
#endif

namespace flatmin {

bool cuda_available() { return torch::cuda::is_available(); }

c10::Device parse_device(const std::string& name) {
  const std::string valid = " (valid: cpu, cuda, cuda:N)";
  if (name == "cpu") return c10::Device(c10::DeviceType::CPU);
  if (name.rfind("cuda", 0) != 0) throw Error("unknown device '" + name + "'" + valid);
  int64_t index = 0;
  if (name.size() > 4) {
    const std::string digits = name.substr(5);
    bool ok = name[4] == ':' && !digits.empty() && digits.size() <= 4;
    for (char c : digits) ok = ok && std::isdigit(static_cast<unsigned char>(c));
    if (!ok) throw Error("unknown device '" + name + "'" + valid);
    index = std::stoll(digits);
  }
  check(cuda_available(), "--device " + name + ": this flatmin's LibTorch " +
                              (torch::cuda::device_count() == 0 ? std::string("sees no CUDA GPU")
                                                                : std::string("cannot use CUDA")) +
                              " (build it against a CUDA LibTorch: docs/GPU.md; or use --device cpu)");
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  check(index < count, "--device " + name + ": there " + (count == 1 ? "is 1 GPU" : "are " + std::to_string(count) + " GPUs") +
                           " (cuda:0" + (count > 1 ? " to cuda:" + std::to_string(count - 1) : std::string()) + ")");
  return c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(index));
}

c10::Device module_device(const torch::nn::Module& module) {
  for (const auto& p : module.parameters()) return p.device();
  for (const auto& b : module.buffers()) return b.device();
  return c10::Device(c10::DeviceType::CPU);
}

void synchronize(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

Precision parse_precision(const std::string& name) {
  if (name == "fp32" || name == "float32") return Precision::kFloat32;
  if (name == "bf16" || name == "bfloat16") return Precision::kBFloat16;
  throw Error("unknown precision '" + name + "' (valid: fp32, bf16)");
}

std::string to_string(Precision precision) { return precision == Precision::kBFloat16 ? "bf16" : "fp32"; }

AutocastScope::AutocastScope(const c10::Device& device, Precision precision) {
  if (precision == Precision::kFloat32) return;
  check(device.is_cpu() || device.is_cuda(), "bf16 autocast runs on the CPU or CUDA, not on " + device.str());
  active_ = true;
  cuda_ = device.is_cuda();
#ifdef FLATMIN_AUTOCAST_BY_DEVICE_TYPE
  const c10::DeviceType type = device.type();
  was_enabled_ = at::autocast::is_autocast_enabled(type);
  was_dtype_ = at::autocast::get_autocast_dtype(type);
  at::autocast::set_autocast_enabled(type, true);
  at::autocast::set_autocast_dtype(type, at::kBFloat16);
#else
  was_enabled_ = cuda_ ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
  was_dtype_ = cuda_ ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
  if (cuda_) {
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
  } else {
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  }
#endif
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  // The cache holds bf16 copies of the weights: they are stale once the step moves W.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#ifdef FLATMIN_AUTOCAST_BY_DEVICE_TYPE
  const c10::DeviceType type = cuda_ ? c10::DeviceType::CUDA : c10::DeviceType::CPU;
  at::autocast::set_autocast_enabled(type, was_enabled_);
  at::autocast::set_autocast_dtype(type, was_dtype_);
#else
  if (cuda_) {
    at::autocast::set_enabled(was_enabled_);
    at::autocast::set_autocast_gpu_dtype(was_dtype_);
  } else {
    at::autocast::set_cpu_enabled(was_enabled_);
    at::autocast::set_autocast_cpu_dtype(was_dtype_);
  }
#endif
}

}  // namespace flatmin
