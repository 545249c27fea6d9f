#include "flatmin/models/scripted.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/torch.h>

#include "flatmin/core/error.h"
#include "flatmin/core/shape.h"

namespace flatmin::models {
namespace {


/// The line of a LibTorch error that says what went wrong. The interpreter prefixes a model's error with a
/// traceback, and its last "...Error: " line is the model's own complaint; a reader's error ends with
/// LibTorch's stack ("Exception raised from ...", "frame #18: <unknown function> + 0x..."), whose addresses
/// mean nothing to a user: then its first line.
std::string complaint(const std::string& what) {
  std::istringstream lines(what);
  std::string line, first, error;
  while (std::getline(lines, line)) {
    const size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos) continue;
    const std::string text = line.substr(start);
    if (text.rfind("frame #", 0) == 0 || text.rfind("Exception raised from", 0) == 0) continue;
    if (first.empty()) first = text;
    const size_t at = text.find("Error: ");
    if (at != std::string::npos && text.find_first_of(" \t") > at) error = text.substr(at + 7);
  }
  return error.empty() ? first : error;
}

/// Registers `script`'s parameters, buffers and submodules (recursively) in `node`: the same tensors.
void mirror(const torch::jit::Module& script, torch::nn::Module& node) {
  for (const auto& p : script.named_parameters(/*recurse=*/false)) node.register_parameter(p.name, p.value, p.value.requires_grad());
  for (const auto& b : script.named_buffers(/*recurse=*/false)) node.register_buffer(b.name, b.value);
  for (const auto& child : script.named_children()) {
    auto sub = std::make_shared<torch::nn::Module>(child.name);
    mirror(child.value, *sub);
    node.register_module(child.name, sub);
  }
}

Model from_script(torch::jit::Module script, std::string source, const std::string& name) {
  auto forward = script.find_method("forward");
  check(forward.has_value(), name + ": the TorchScript module has no forward method");
  const size_t arguments = forward->function().getSchema().arguments().size();  // self included
  check(arguments == 2, name + ": forward must take one tensor (it takes " + std::to_string(arguments - 1) + " arguments)");
  // Every op then records ordinary autograd nodes, which the Hessian measures differentiate twice; the
  // optimising executor's fused graphs gain little on a CPU.
  torch::jit::setGraphExecutorOptimize(false);
  return Model(std::make_shared<ScriptedModuleImpl>(std::move(script), std::move(source)));
}

}  // namespace

ScriptedModuleImpl::ScriptedModuleImpl(torch::jit::Module script, std::string source)
    : torch::nn::Module("ScriptedModule"), script_(std::move(script)), source_(std::move(source)) {
  mirror(script_, *this);
  train(script_.is_training());
}

at::Tensor ScriptedModuleImpl::forward(const at::Tensor& x) {
  c10::IValue out = script_.forward({x});
  if (out.isTensor()) return out.toTensor();
  throw Error("TorchScript model: forward returned " + out.tagKind() + ", not a tensor of logits");
}

void ScriptedModuleImpl::train(bool on) {
  torch::nn::Module::train(on);
  script_.train(on);
}

Model load_scripted_model_bytes(const std::string& bytes, const std::string& name) {
  torch::jit::Module script;
  try {
    std::istringstream in(bytes);
    script = torch::jit::load(in, torch::kCPU);
  } catch (const std::exception& e) {
    throw Error(name + ": not a TorchScript file (" + complaint(e.what()) +
                "); write one in Python with torch.jit.script(model).save(path)");
  }
  return from_script(std::move(script), bytes, name);
}

Model load_scripted_model(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(in.good(), path + ": cannot open the TorchScript file");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  check(!in.bad(), path + ": read error");
  return load_scripted_model_bytes(bytes.str(), path);
}

ScriptedModuleImpl* as_scripted(const Model& model) {
  return dynamic_cast<ScriptedModuleImpl*>(model.module().get());
}

void check_model_fits(const Model& model, const at::Tensor& sample, int64_t num_classes, const std::string& what) {
  const bool was_training = model->is_training();
  model->eval();
  at::Tensor out;
  try {
    torch::NoGradGuard no_grad;
    out = model.forward(sample);
  } catch (const std::exception& e) {
    model->train(was_training);
    throw Error(what + ": does not accept inputs " + shape_string(sample.sizes()) + " (" + complaint(e.what()) + ")");
  }
  model->train(was_training);
  check(out.dim() == 2 && out.size(0) == sample.size(0) && out.size(1) == num_classes,
        what + ": maps inputs " + shape_string(sample.sizes()) + " to " + shape_string(out.sizes()) + ", not to logits [" +
            std::to_string(sample.size(0)) + ", " + std::to_string(num_classes) + "] for the data's " +
            std::to_string(num_classes) + " classes");
  check(at::isFloatingType(out.scalar_type()), what + ": its logits are not floating point");
}

// ------------------------------------------------------------------------------------------------- export

namespace {

/// An empty TorchScript module of class `type`, with the `training` flag Python's modules have.
torch::jit::Module new_module(const std::string& type) {
  torch::jit::Module out("__torch__.flatmin." + type);
  out.register_attribute("training", c10::BoolType::get(), true);
  return out;
}

std::string exact(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", v);
  return text;
}

/// A TorchScript module of class `type` holding copies of `module`'s own parameters and buffers.
torch::jit::Module script_with_tensors(const torch::nn::Module& module, const std::string& type) {
  torch::jit::Module out = new_module(type);
  for (const auto& p : module.named_parameters(/*recurse=*/false))
    out.register_parameter(p.key(), p.value().detach().clone(), /*is_buffer=*/false);
  for (const auto& b : module.named_buffers(/*recurse=*/false))
    out.register_buffer(b.key(), b.value().detach().clone());
  return out;
}

torch::jit::Module linear(const torch::nn::Module& m, const std::string& type) {
  torch::jit::Module out = script_with_tensors(m, type);
  out.define(R"(
def forward(self, x):
    return torch.linear(x, self.weight, self.bias)
)");
  return out;
}

torch::jit::Module conv(const torch::nn::Conv2dImpl& m, const std::string& type) {
  torch::jit::Module out = script_with_tensors(m, type);
  const auto& o = m.options;
  const auto& stride = *o.stride();
  const auto* padding = c10::get_if<torch::ExpandingArray<2>>(&o.padding());
  check(padding != nullptr, "export: only explicit convolution padding is supported");
  const std::string bias = o.bias() ? "self.bias" : "None";
  out.define("def forward(self, x):\n    return torch.conv2d(x, self.weight, " + bias + ", [" +
             std::to_string(stride[0]) + ", " + std::to_string(stride[1]) + "], [" + std::to_string((**padding)[0]) +
             ", " + std::to_string((**padding)[1]) + "])\n");
  return out;
}

torch::jit::Module batch_norm(const torch::nn::BatchNorm2dImpl& m, const std::string& type) {
  torch::jit::Module out = script_with_tensors(m, type);
  out.define("def forward(self, x):\n    return torch.batch_norm(x, self.weight, self.bias, self.running_mean, "
             "self.running_var, self.training, " +
             exact(m.options.momentum().value_or(0.1)) + ", " + exact(m.options.eps()) +
             ", False)\n");
  return out;
}

const torch::nn::Module& child(const torch::nn::Module& m, const std::string& name) {
  const auto children = m.named_children();
  const auto* found = children.find(name);
  check(found != nullptr, "export: the model has no submodule '" + name + "'");
  return **found;
}

template <typename Impl>
const Impl& child_as(const torch::nn::Module& m, const std::string& name) {
  const Impl* impl = child(m, name).as<Impl>();
  check(impl != nullptr, "export: submodule '" + name + "' is not of the expected type");
  return *impl;
}

// `act` is the TorchScript call of the model's activation ("torch.relu", ...).
torch::jit::Module export_mlp(const torch::nn::Module& m, const std::string& act) {
  torch::jit::Module out = new_module("Mlp");
  out.register_module("fc1", linear(child(m, "fc1"), "Linear"));
  out.register_module("fc2", linear(child(m, "fc2"), "Linear"));
  out.define("def forward(self, x):\n    return self.fc2.forward(" + act + "(self.fc1.forward(x.flatten(1))))\n");
  return out;
}

torch::jit::Module export_cnn(const torch::nn::Module& m, const std::string& act) {
  torch::jit::Module out = new_module("Cnn");
  out.register_module("conv1", conv(child_as<torch::nn::Conv2dImpl>(m, "conv1"), "Conv2d"));
  out.register_module("conv2", conv(child_as<torch::nn::Conv2dImpl>(m, "conv2"), "Conv2d"));
  out.register_module("fc1", linear(child(m, "fc1"), "Linear"));
  out.register_module("fc2", linear(child(m, "fc2"), "Linear"));
  out.define("def forward(self, x):\n"
             "    x = torch.max_pool2d(" + act + "(self.conv1.forward(x)), [2, 2])\n"
             "    x = torch.max_pool2d(" + act + "(self.conv2.forward(x)), [2, 2])\n"
             "    return self.fc2.forward(" + act + "(self.fc1.forward(x.flatten(1))))\n");
  return out;
}

/// A Sequential of `modules` under the names "0", "1", ... (as torch.nn.Sequential names them).
torch::jit::Module sequential(const std::vector<torch::jit::Module>& modules) {
  torch::jit::Module out = new_module("Sequential");
  std::string body = "def forward(self, x):\n";
  for (size_t i = 0; i < modules.size(); ++i) {
    out.register_module(std::to_string(i), modules[i]);
    body += "    x = getattr(self, \"" + std::to_string(i) + "\").forward(x)\n";
  }
  out.define(body + "    return x\n");
  return out;
}

torch::jit::Module export_block(const torch::nn::Module& m, const std::string& act) {
  torch::jit::Module out = new_module("BasicBlock");
  out.register_module("conv1", conv(child_as<torch::nn::Conv2dImpl>(m, "conv1"), "Conv2d"));
  out.register_module("bn1", batch_norm(child_as<torch::nn::BatchNorm2dImpl>(m, "bn1"), "BatchNorm2d"));
  out.register_module("conv2", conv(child_as<torch::nn::Conv2dImpl>(m, "conv2"), "Conv2d"));
  out.register_module("bn2", batch_norm(child_as<torch::nn::BatchNorm2dImpl>(m, "bn2"), "BatchNorm2d"));
  const torch::nn::Module& shortcut = child(m, "shortcut");
  std::string residual = "x";
  if (!shortcut.children().empty()) {
    out.register_module("shortcut", sequential({conv(child_as<torch::nn::Conv2dImpl>(shortcut, "0"), "Conv2d"),
                                                batch_norm(child_as<torch::nn::BatchNorm2dImpl>(shortcut, "1"),
                                                           "BatchNorm2d")}));
    residual = "self.shortcut.forward(x)";
  }
  out.define("def forward(self, x):\n    out = " + act + "(self.bn1.forward(self.conv1.forward(x)))\n"
             "    out = self.bn2.forward(self.conv2.forward(out))\n    return " + act + "(out + " + residual + ")\n");
  return out;
}

torch::jit::Module export_resnet(const torch::nn::Module& m, const std::string& act) {
  torch::jit::Module out = new_module("ResNet");
  out.register_module("stem", conv(child_as<torch::nn::Conv2dImpl>(m, "stem"), "Conv2d"));
  out.register_module("stem_bn", batch_norm(child_as<torch::nn::BatchNorm2dImpl>(m, "stem_bn"), "BatchNorm2d"));
  std::vector<torch::jit::Module> blocks;
  for (const auto& block : child(m, "stages").children()) blocks.push_back(export_block(*block, act));
  out.register_module("stages", sequential(blocks));
  out.register_module("head", linear(child(m, "head"), "Linear"));
  out.define("def forward(self, x):\n    x = " + act + R"((self.stem_bn.forward(self.stem.forward(x)))
    x = self.stages.forward(x)
    x = torch.adaptive_avg_pool2d(x, [1, 1]).flatten(1)
    return self.head.forward(x)
)");
  return out;
}

// The TorchScript module export_torchscript writes: a TorchScript model as itself, flatmin's architectures
// rebuilt.
torch::jit::Module as_torchscript(const Model& model, const ModelSpec& spec) {
  check(static_cast<bool>(model), "export: no model");
  torch::jit::Module script;
  if (ScriptedModuleImpl* scripted = as_scripted(model)) {
    script = scripted->script();
  } else {
    std::string name = spec.name();
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const std::string act = "torch." + to_string(parse_activation(spec.activation()));
    if (name == "mlp") {
      script = export_mlp(*model.module(), act);
    } else if (name == "cnn") {
      script = export_cnn(*model.module(), act);
    } else {
      check(name.rfind("resnet", 0) == 0, "export: flatmin's " + spec.name() + " cannot be exported as TorchScript");
      script = export_resnet(*model.module(), act);
    }
    script.eval();
  }
  return script;
}

}  // namespace

std::string torchscript_bytes(const Model& model, const ModelSpec& spec) {
  std::ostringstream out;
  as_torchscript(model, spec).save(out);
  return out.str();
}

void export_torchscript(const Model& model, const ModelSpec& spec, const std::string& path) {
  const torch::jit::Module script = as_torchscript(model, spec);
  try {
    script.save(path);
  } catch (const std::exception& e) {
    throw Error(path + ": cannot write the TorchScript file (" + complaint(e.what()) + ")");
  }
}

}  // namespace flatmin::models
