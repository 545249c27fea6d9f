#include "flatmin/models/models.h"

#include <algorithm>
#include <cctype>
#include <string>

#include <ATen/Functions.h>
#include <torch/nn/init.h>

#include "flatmin/core/error.h"
#include "flatmin/core/shape.h"
#include "flatmin/models/scripted.h"

namespace flatmin::models {
namespace {

constexpr const char* kValidNames = "mlp, cnn, resnet18, resnet34, torchscript";

void check_positive(int64_t value, const std::string& what) {
  check(value > 0, what + " must be > 0 (got " + std::to_string(value) + ")");
}

/// The spatial size after a 2×2, stride-2 max-pool (floor, as at::max_pool2d).
int64_t pooled(int64_t size) { return size / 2; }


}  // namespace

// ------------------------------------------------------------------------------------------------ activation

Activation parse_activation(const std::string& name) {
  for (const Activation a : {Activation::kRelu, Activation::kGelu, Activation::kSilu, Activation::kSoftplus})
    if (to_string(a) == name) return a;
  throw Error("unknown activation '" + name + "' (valid: relu, gelu, silu, softplus)");
}

std::string to_string(Activation activation) {
  switch (activation) {
    case Activation::kRelu: return "relu";
    case Activation::kGelu: return "gelu";
    case Activation::kSilu: return "silu";
    case Activation::kSoftplus: return "softplus";
  }
  return "relu";
}

at::Tensor activate(Activation activation, const at::Tensor& x) {
  switch (activation) {
    case Activation::kRelu: return at::relu(x);
    case Activation::kGelu: return at::gelu(x);
    case Activation::kSilu: return at::silu(x);
    case Activation::kSoftplus: return at::softplus(x);
  }
  return at::relu(x);
}

// ------------------------------------------------------------------------------------------------ Mlp

MlpImpl::MlpImpl(const MlpOptions& options_) : options(options_) {
  check_positive(options.in_features(), "MLP in_features");
  check_positive(options.hidden(), "MLP hidden width");
  check_positive(options.num_classes(), "MLP num_classes");
  fc1_ = register_module("fc1", torch::nn::Linear(options.in_features(), options.hidden()));
  fc2_ = register_module("fc2", torch::nn::Linear(options.hidden(), options.num_classes()));
}

at::Tensor MlpImpl::forward(at::Tensor x) {
  // Accepts [N, C, H, W] images or already-flat [N, F] features.
  check(x.dim() >= 2 && x.numel() == x.size(0) * options.in_features(),
        "MLP: input " + shape_string(x.sizes()) + " does not have " + std::to_string(options.in_features()) +
            " features per sample");
  x = activate(options.activation(), fc1_->forward(x.flatten(1)));
  return fc2_->forward(x);
}

// ------------------------------------------------------------------------------------------------ Cnn

CnnImpl::CnnImpl(const CnnOptions& options_) : options(options_) {
  check_positive(options.in_channels(), "CNN in_channels");
  check_positive(options.width(), "CNN width");
  check_positive(options.hidden(), "CNN hidden width");
  check_positive(options.num_classes(), "CNN num_classes");
  // Two 2×2 max-pools must leave at least one pixel.
  check(options.image_size() >= 4,
        "CNN image_size must be >= 4 (got " + std::to_string(options.image_size()) + ")");
  const int64_t w = options.width();
  // padding 1 keeps 3×3 convs size-preserving, so only the pools shrink the map.
  conv1_ = register_module(
      "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(options.in_channels(), w, 3).padding(1)));
  conv2_ = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(w, 2 * w, 3).padding(1)));
  const int64_t side = pooled(pooled(options.image_size()));
  fc1_ = register_module("fc1", torch::nn::Linear(2 * w * side * side, options.hidden()));
  fc2_ = register_module("fc2", torch::nn::Linear(options.hidden(), options.num_classes()));
}

at::Tensor CnnImpl::forward(at::Tensor x) {
  check(x.dim() == 4 && x.size(1) == options.in_channels() && x.size(2) == options.image_size() &&
            x.size(3) == options.image_size(),
        "CNN: input " + shape_string(x.sizes()) + " is not [N, " + std::to_string(options.in_channels()) + ", " +
            std::to_string(options.image_size()) + ", " + std::to_string(options.image_size()) + "]");
  const Activation act = options.activation();
  x = at::max_pool2d(activate(act, conv1_->forward(x)), {2, 2});
  x = at::max_pool2d(activate(act, conv2_->forward(x)), {2, 2});
  x = activate(act, fc1_->forward(x.flatten(1)));
  return fc2_->forward(x);
}

// ------------------------------------------------------------------------------------------------ ResNet

BasicBlockImpl::BasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride, Activation activation)
    : activation_(activation) {
  check_positive(in_planes, "BasicBlock in_planes");
  check_positive(planes, "BasicBlock planes");
  check_positive(stride, "BasicBlock stride");
  // Convs feed BatchNorm, whose shift makes a conv bias redundant.
  conv1_ = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(in_planes, planes, 3)
                                                          .stride(stride)
                                                          .padding(1)
                                                          .bias(false)));
  bn1_ = register_module("bn1", torch::nn::BatchNorm2d(planes));
  conv2_ = register_module(
      "conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(planes, planes, 3).padding(1).bias(false)));
  bn2_ = register_module("bn2", torch::nn::BatchNorm2d(planes));
  shortcut_ = register_module("shortcut", torch::nn::Sequential());
  if (stride != 1 || in_planes != planes) {
    // Projection shortcut (option B of He et al.) where the residual's shape changes.
    shortcut_->push_back(
        torch::nn::Conv2d(torch::nn::Conv2dOptions(in_planes, planes, 1).stride(stride).bias(false)));
    shortcut_->push_back(torch::nn::BatchNorm2d(planes));
  }
}

at::Tensor BasicBlockImpl::forward(at::Tensor x) {
  at::Tensor out = activate(activation_, bn1_->forward(conv1_->forward(x)));
  out = bn2_->forward(conv2_->forward(out));
  out = out + (shortcut_->is_empty() ? x : shortcut_->forward(x));
  return activate(activation_, out);
}

ResNetImpl::ResNetImpl(const ResNetOptions& options_) : options(options_) {
  check(options.depth() == 18 || options.depth() == 34,
        "ResNet depth must be 18 or 34 (got " + std::to_string(options.depth()) + ")");
  check_positive(options.in_channels(), "ResNet in_channels");
  check_positive(options.width(), "ResNet width");
  check_positive(options.num_classes(), "ResNet num_classes");
  const int64_t w = options.width();
  // CIFAR stem: one stride-1 3×3 conv and no max-pool, so 28–32 px inputs end stage 4 at 4×4.
  stem_ = register_module("stem", torch::nn::Conv2d(torch::nn::Conv2dOptions(options.in_channels(), w, 3)
                                                        .padding(1)
                                                        .bias(false)));
  stem_bn_ = register_module("stem_bn", torch::nn::BatchNorm2d(w));

  const int64_t blocks_18[4] = {2, 2, 2, 2};
  const int64_t blocks_34[4] = {3, 4, 6, 3};
  const int64_t* blocks = options.depth() == 18 ? blocks_18 : blocks_34;
  // All blocks in one flat Sequential ("stages.0" … "stages.K"); stage boundaries follow from the widths.
  stages_ = register_module("stages", torch::nn::Sequential());
  int64_t in_planes = w;
  for (int64_t stage = 0; stage < 4; ++stage) {
    const int64_t planes = w << stage;
    for (int64_t b = 0; b < blocks[stage]; ++b) {
      const int64_t stride = (stage > 0 && b == 0) ? 2 : 1;
      stages_->push_back(BasicBlock(in_planes, planes, stride, options.activation()));
      in_planes = planes;
    }
  }
  head_ = register_module("head", torch::nn::Linear(in_planes, options.num_classes()));

  // As torchvision's ResNet: He-normal (fan_out) convs, identity BatchNorm; Linear keeps its default.
  for (const auto& module : modules(/*include_self=*/false)) {
    if (auto* conv = module->as<torch::nn::Conv2dImpl>()) {
      torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
    } else if (auto* bn = module->as<torch::nn::BatchNorm2dImpl>()) {
      torch::nn::init::ones_(bn->weight);
      torch::nn::init::zeros_(bn->bias);
    }
  }
}

at::Tensor ResNetImpl::forward(at::Tensor x) {
  check(x.dim() == 4 && x.size(1) == options.in_channels(),
        "ResNet: input " + shape_string(x.sizes()) + " is not [N, " + std::to_string(options.in_channels()) +
            ", H, W]");
  x = activate(options.activation(), stem_bn_->forward(stem_->forward(x)));
  x = stages_->forward(x);
  x = at::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
  return head_->forward(x);
}

// ------------------------------------------------------------------------------------------------ factory

namespace {
std::string lower(std::string name) {
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return name;
}
}  // namespace

int default_num_threads(const ModelSpec& spec, int cores) {
  const std::string name = lower(spec.name());
  return name == "mlp" || name == "cnn" ? 1 : std::max(1, cores);
}

std::string classifier_name(const ModelSpec& spec) {
  const std::string name = lower(spec.name());
  check(name != "torchscript", "a TorchScript model's classifier is not known to flatmin: give it the data's number "
                               "of classes in Python");
  if (name == "mlp" || name == "cnn") return "fc2";
  if (name == "resnet18" || name == "resnet34") return "head";
  throw Error("unknown model '" + spec.name() + "' (valid: mlp, cnn, resnet18, resnet34)");
}

Model make_model(const ModelSpec& spec) {
  const std::string name = lower(spec.name());
  const std::string what = "model '" + spec.name() + "'";
  check_positive(spec.in_channels(), what + ": in_channels");
  check_positive(spec.image_size(), what + ": image_size");
  check_positive(spec.num_classes(), what + ": num_classes");
  check(spec.width() >= 0, what + ": width must be >= 0, 0 meaning the default (got " +
                               std::to_string(spec.width()) + ")");
  const bool custom_width = spec.width() > 0;
  const Activation activation = parse_activation(spec.activation());
  if (name == "torchscript") {
    check(activation == Activation::kRelu, what + ": a TorchScript model has its own activations (no --activation)");
    check(!spec.file().empty(), what + ": needs a TorchScript file (--model-file)");
    return load_scripted_model(spec.file());
  }

  // Constructors re-check their options; prefix their messages with the model's name.
  try {
    if (name == "mlp") {
      MlpOptions options(spec.in_channels() * spec.image_size() * spec.image_size(), spec.num_classes());
      if (custom_width) options.hidden(spec.width());
      return Model(Mlp(options.activation(activation)));
    }
    if (name == "cnn") {
      CnnOptions options(spec.in_channels(), spec.image_size(), spec.num_classes());
      if (custom_width) options.width(spec.width());
      return Model(Cnn(options.activation(activation)));
    }
    // "resnet<digits>": an unsupported depth gets ResNetImpl's depth message, not "unknown name".
    const std::string digits = name.compare(0, 6, "resnet") == 0 ? name.substr(6) : "";
    if (!digits.empty() && digits.size() <= 9 &&
        std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c) != 0; })) {
      ResNetOptions options(std::stoll(digits), spec.in_channels(), spec.num_classes());
      if (custom_width) options.width(spec.width());
      return Model(ResNet(options.activation(activation)));
    }
  } catch (const Error& e) {
    throw Error(what + ": " + e.what());
  }
  throw Error(what + ": unknown model name; valid names: " + kValidNames);
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) {
    if (p.requires_grad()) n += p.numel();
  }
  return n;
}

}  // namespace flatmin::models
