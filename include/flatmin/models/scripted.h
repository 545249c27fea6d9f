#pragma once
/// Models written in PyTorch: a TorchScript file (`torch.jit.script(model).save("model.pt")`, or a traced
/// module) as a flatmin model. The TorchScript module's parameters and buffers are registered, under their
/// own names and as the *same* tensors, in a torch::nn::Module tree that mirrors the script's submodules, so
/// that every method, the BatchNorm policy, checkpoints and the geometry measures see an ordinary module,
/// and whatever they do to the weights the script computes with.

#include <memory>
#include <string>

#include <torch/nn/module.h>
#include <torch/script.h>

#include "flatmin/models/models.h"

namespace flatmin::models {

/// The torch::nn::Module face of a TorchScript module. train(bool) switches both (BatchNorm, dropout).
class ScriptedModuleImpl : public torch::nn::Module {
 public:
  /// `source` is the file's bytes, kept so that a checkpoint can carry the architecture.
  ScriptedModuleImpl(torch::jit::Module script, std::string source);
  at::Tensor forward(const at::Tensor& x);
  void train(bool on = true) override;
  torch::jit::Module& script() { return script_; }
  const std::string& source() const { return source_; }

 private:
  torch::jit::Module script_;
  std::string source_;
};

/// Reads a TorchScript file onto the CPU. Throws flatmin::Error "<path>: ..." when it is missing or is not a
/// TorchScript archive, or its forward is not a method taking one tensor.
Model load_scripted_model(const std::string& path);
/// The same from the file's bytes (what a checkpoint carries); `name` appears in messages.
Model load_scripted_model_bytes(const std::string& bytes, const std::string& name);

/// The ScriptedModuleImpl behind `model`, or nullptr when it is not a TorchScript model.
ScriptedModuleImpl* as_scripted(const Model& model);

/// Checks that `model` maps `sample` (a few examples [n, ...]) to logits [n, num_classes], in eval mode and
/// without gradients (its training mode is restored). Throws flatmin::Error "<what>: ..." naming the input
/// shape and the model's complaint (e.g. "expected input[2, 1, 28, 28] to have 3 channels").
void check_model_fits(const Model& model, const at::Tensor& sample, int64_t num_classes, const std::string& what);

/// Writes `model` as a TorchScript file that `torch.jit.load` opens in Python with its current weights: a
/// TorchScript model as itself, flatmin's mlp, cnn and ResNets as equivalent TorchScript modules with the same
/// parameter and buffer names (in eval mode). Throws flatmin::Error on an unknown architecture or I/O failure.
void export_torchscript(const Model& model, const ModelSpec& spec, const std::string& path);
/// The same TorchScript file's bytes, in memory (what Python's torch.jit.load reads from a BytesIO).
std::string torchscript_bytes(const Model& model, const ModelSpec& spec);

}  // namespace flatmin::models
