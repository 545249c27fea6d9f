#pragma once
/// The networks of the papers' experiments at this machine's scale. Each maps [N, C, H, W] float inputs
/// to [N, num_classes] logits.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

namespace flatmin::models {

/// The nonlinearity between layers: ReLU (the papers'), or a smooth one of a similar shape, for questions
/// about ReLU's kink (a second-order expansion of the loss assumes it is smooth): GELU, SiLU, softplus.
enum class Activation { kRelu, kGelu, kSilu, kSoftplus };
/// "relu" | "gelu" | "silu" | "softplus"; throws flatmin::Error naming the valid ones.
Activation parse_activation(const std::string& name);
std::string to_string(Activation activation);
at::Tensor activate(Activation activation, const at::Tensor& x);

/// The NSO paper's two-layer MLP: flatten → Linear(C·H·W, hidden) → ReLU → Linear(hidden, classes).
struct MlpOptions {
  MlpOptions(int64_t in_features, int64_t num_classes) : in_features_(in_features), num_classes_(num_classes) {}
  TORCH_ARG(int64_t, in_features);
  TORCH_ARG(int64_t, num_classes);
  TORCH_ARG(int64_t, hidden) = 128;
  TORCH_ARG(Activation, activation) = Activation::kRelu;
};

class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const MlpOptions& options);
  at::Tensor forward(at::Tensor x);
  MlpOptions options;

 private:
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(Mlp);

/// A small CNN: [conv3×3(width) → ReLU → maxpool2] → [conv3×3(2·width) → ReLU → maxpool2] →
/// Linear(·, hidden) → ReLU → Linear(hidden, classes). The 3×3 convs pad by 1, so only the pools shrink
/// the map: inputs must be image_size × image_size, image_size ≥ 4 (28 px → 7×7, 32 px → 8×8).
struct CnnOptions {
  CnnOptions(int64_t in_channels, int64_t image_size, int64_t num_classes)
      : in_channels_(in_channels), image_size_(image_size), num_classes_(num_classes) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, image_size);  ///< H = W
  TORCH_ARG(int64_t, num_classes);
  TORCH_ARG(int64_t, width) = 32;
  TORCH_ARG(int64_t, hidden) = 128;
  TORCH_ARG(Activation, activation) = Activation::kRelu;
};

class CnnImpl : public torch::nn::Module {
 public:
  explicit CnnImpl(const CnnOptions& options);
  at::Tensor forward(at::Tensor x);
  CnnOptions options;

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(Cnn);

/// CIFAR-style ResNet (He et al. 2016): 3×3 stem conv(width) + BN + ReLU (no max-pool), four stages of
/// BasicBlocks with widths width·{1,2,4,8} and strides {1,2,2,2}, blocks {2,2,2,2} for depth 18 and
/// {3,4,6,3} for depth 34, 1×1-conv + BN shortcuts where shape changes, global average pool, Linear.
/// Any input size works; 28–32 px leave stage 4 at 4×4 (train mode with batch 1 needs more than 1×1 there).
/// Init as torchvision: kaiming_normal_(fan_out, relu) convs, BatchNorm weight 1 and bias 0.
struct ResNetOptions {
  ResNetOptions(int64_t depth, int64_t in_channels, int64_t num_classes)
      : depth_(depth), in_channels_(in_channels), num_classes_(num_classes) {}
  TORCH_ARG(int64_t, depth);  ///< 18 or 34
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, num_classes);
  TORCH_ARG(int64_t, width) = 64;
  TORCH_ARG(Activation, activation) = Activation::kRelu;
};

class BasicBlockImpl : public torch::nn::Module {
 public:
  BasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride, Activation activation = Activation::kRelu);
  at::Tensor forward(at::Tensor x);

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
  torch::nn::Sequential shortcut_{nullptr};  ///< empty when identity
  Activation activation_;
};
TORCH_MODULE(BasicBlock);

class ResNetImpl : public torch::nn::Module {
 public:
  explicit ResNetImpl(const ResNetOptions& options);
  at::Tensor forward(at::Tensor x);
  ResNetOptions options;

 private:
  torch::nn::Conv2d stem_{nullptr};
  torch::nn::BatchNorm2d stem_bn_{nullptr};
  torch::nn::Sequential stages_{nullptr};  ///< all BasicBlocks in order, "stages.0" … (not nested)
  torch::nn::Linear head_{nullptr};
};
TORCH_MODULE(ResNet);

/// A model chosen by name, for the CLI and experiments.
struct ModelSpec {
  TORCH_ARG(std::string, name) = "mlp";  ///< mlp | cnn | resnet18 | resnet34 | torchscript (case-insensitive)
  TORCH_ARG(int64_t, in_channels) = 1;
  TORCH_ARG(int64_t, image_size) = 28;
  TORCH_ARG(int64_t, num_classes) = 10;
  /// Non-zero sets the MLP's hidden size, the CNN's conv width (its hidden stays 128) or the ResNet's width;
  /// 0 keeps the default (MLP hidden 128, CNN width 32, ResNet width 64).
  TORCH_ARG(int64_t, width) = 0;
  /// relu | gelu | silu | softplus (mlp, cnn and ResNets; see Activation).
  TORCH_ARG(std::string, activation) = "relu";
  /// torchscript: the TorchScript file (models/scripted.h); its own weights are the initialisation, and the
  /// sizes above are those of the data it is checked against.
  TORCH_ARG(std::string, file) = "";
};

/// The intra-op thread count that serves this model on `cores` cores, measured (docs/PERFORMANCE.md): 1 for
/// the MLP and the small CNN (a second thread made their steps slower or no faster), every core for ResNets
/// (1.97x faster with 2 threads at batch 64) and for TorchScript models (their size is unknown here).
int default_num_threads(const ModelSpec& spec, int cores);

/// Builds the model named in `spec` as a type-erased module whose forward maps inputs to logits.
/// Throws flatmin::Error on an unknown name or invalid sizes.
class Model {
 public:
  Model() = default;
  /// From a module holder (Mlp, torch::nn::Linear, ...).
  template <typename M>
  explicit Model(M module)
      : module_(module.ptr()), forward_([m = module](const at::Tensor& x) mutable { return m->forward(x); }) {}
  /// From any module with `Tensor forward(const Tensor&)` held by shared_ptr.
  template <typename M>
  explicit Model(std::shared_ptr<M> module)
      : module_(module), forward_([module](const at::Tensor& x) { return module->forward(x); }) {}
  at::Tensor forward(const at::Tensor& x) const { return forward_(x); }
  at::Tensor operator()(const at::Tensor& x) const { return forward_(x); }
  const std::shared_ptr<torch::nn::Module>& module() const { return module_; }
  torch::nn::Module* operator->() const { return module_.get(); }
  explicit operator bool() const { return static_cast<bool>(module_); }

 private:
  std::shared_ptr<torch::nn::Module> module_;
  std::function<at::Tensor(const at::Tensor&)> forward_;
};

Model make_model(const ModelSpec& spec);

/// The submodule that maps features to class logits ("fc2" for mlp and cnn, "head" for ResNets): what
/// fine-tuning re-initialises when the number of classes changes. Its parameters are "<name>.weight" and
/// "<name>.bias".
std::string classifier_name(const ModelSpec& spec);

/// Number of trainable scalars (parameters with requires_grad).
int64_t count_parameters(const torch::nn::Module& module);

}  // namespace flatmin::models
