#pragma once
/// Where tensors live and in which precision the forward pass runs: the one place that knows about CUDA,
/// the LibTorch version's autocast API and the device of a module, so that the rest of the library only
/// passes a c10::Device along.

#include <string>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace torch::nn {
class Module;
}

namespace flatmin {

/// "cpu" | "cuda" | "cuda:N" (LibTorch's spelling). Throws flatmin::Error with one line when the name is
/// malformed, when CUDA is asked for and this LibTorch has no CUDA or sees no GPU, or when N is not a GPU.
c10::Device parse_device(const std::string& name);

/// Whether this LibTorch was built with CUDA and sees at least one GPU.
bool cuda_available();

/// The device of a module's first parameter (else buffer); CPU when it has neither.
c10::Device module_device(const torch::nn::Module& module);

/// Waits for the device's queued work (a no-op on the CPU): benchmarks time whole steps with it.
void synchronize(const c10::Device& device);

/// Precision of the forward pass. Weights, gradients, the perturbation and the methods' combination stay
/// in float32 whatever it is: autocast runs matrix products and convolutions in bfloat16 and the rest in
/// float32, as torch.autocast does.
enum class Precision { kFloat32, kBFloat16 };

/// "fp32" (alias "float32") | "bf16" (alias "bfloat16"); throws flatmin::Error otherwise.
Precision parse_precision(const std::string& name);
std::string to_string(Precision precision);

/// Autocast for the forward passes within its scope on `device`'s type (CPU or CUDA); nothing for kFloat32.
/// Restores the previous autocast state on exit and frees autocast's weight cache when the outermost
/// scope ends (weights change between steps).
class AutocastScope {
 public:
  AutocastScope(const c10::Device& device, Precision precision);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
  bool was_enabled_ = false;
  c10::ScalarType was_dtype_ = c10::ScalarType::Float;
};

}  // namespace flatmin
