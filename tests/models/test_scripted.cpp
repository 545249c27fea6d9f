// TorchScript models in (a fixture scripted in Python, tests/fixtures/make_scripted_models.py) and out
// (flatmin's models exported and run by Python's torch.jit.load).
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/torch.h>

#include "flatmin/core/error.h"
#include "flatmin/geometry/spectrum.h"
#include "flatmin/models/scripted.h"
#include "flatmin/optim/methods.h"
#include "flatmin/optim/perturbed_optimizer.h"
#include "flatmin/training/checkpoint.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace scripted_test {

namespace fm = flatmin::models;
namespace fs = std::filesystem;

namespace {

const std::string kFixtures = FLATMIN_FIXTURES;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const flatmin::Error& e) {
    return e.what();
  }
  return "";
}

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("flatmin-scripted-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void write_pickle(const fs::path& path, const at::Tensor& t) {
  const std::vector<char> bytes = torch::pickle_save(t);
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

TEST(ScriptedModel, MirrorsTheScriptsNamesAndSharesItsTensors) {
  fm::Model model = fm::load_scripted_model(kFixtures + "/tiny_cnn.pt");
  std::vector<std::string> names;
  for (const auto& p : model->named_parameters()) names.push_back(p.key());
  EXPECT_EQ(names, (std::vector<std::string>{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight",
                                             "fc1.bias", "fc2.weight", "fc2.bias"}));
  const at::Tensor x = torch::rand({3, 1, 28, 28});
  torch::NoGradGuard no_grad;
  const at::Tensor before = model(x);
  model->named_parameters()["fc2.bias"].add_(1.0);  // what an optimizer does: the script must see it
  EXPECT_TRUE(torch::allclose(model(x), before + 1.0, 1e-5, 1e-5));
}

TEST(ScriptedModel, FineTunesAndItsHessianTraceEqualsTheNativeCnnWithTheSameWeights) {
  fm::Model scripted = fm::load_scripted_model(kFixtures + "/tiny_cnn.pt");
  torch::manual_seed(3);
  flatmin::data::Dataset data;
  data.inputs = torch::randn({40, 1, 28, 28});
  data.targets = torch::randint(0, 10, {40}, torch::kLong);
  data.num_classes = 10;
  // Fine-tuning: NSO steps from the file's weights lower the loss.
  auto base = std::make_shared<torch::optim::SGD>(scripted->parameters(), torch::optim::SGDOptions(0.1));
  flatmin::optim::PerturbedOptimizer opt(base, flatmin::optim::make_method(flatmin::optim::MethodSpec().name("nso").sigma(0.01)));
  auto loss_of = [&] { return torch::cross_entropy_loss(scripted(data.inputs), data.targets); };
  const double before = loss_of().item<double>();
  for (int step = 0; step < 20; ++step) {
    opt.step([&] {
      auto loss = loss_of();
      loss.backward();
      return loss;
    });
  }
  EXPECT_LT(loss_of().item<double>(), before - 0.1);
  // The same network built natively, with the fine-tuned weights: the same trace from the same probes.
  fm::Model native(fm::Cnn(fm::CnnOptions(1, 28, 10).width(4).hidden(16)));
  {
    torch::NoGradGuard no_grad;
    const auto from = scripted->named_parameters();
    for (auto& p : native->named_parameters()) p.value().copy_(from[p.key()]);
  }
  const auto options = flatmin::geometry::TraceOptions().max_probes(20).min_probes(20).seed(7);
  const auto opts = flatmin::geometry::ObjectiveOptions().batch_size(16);
  const auto a = flatmin::geometry::hutchinson_trace(flatmin::geometry::Objective::for_model(scripted, data, opts), options);
  const auto b = flatmin::geometry::hutchinson_trace(flatmin::geometry::Objective::for_model(native, data, opts), options);
  ASSERT_EQ(a.probes, 20);
  EXPECT_GT(std::abs(a.trace), 1e-3);
  EXPECT_NEAR(a.trace, b.trace, 1e-4 * std::abs(b.trace));
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) EXPECT_NEAR(a.layers[i].trace, b.layers[i].trace, 1e-4 * std::abs(b.trace));
}

TEST(ScriptedModel, BatchNormFollowsThePolicyAndFrozenParametersNeverMove) {
  fm::Model model = fm::load_scripted_model(kFixtures + "/tiny_bn_net.pt");
  const auto params = model->named_parameters();
  ASSERT_FALSE(params["scale"].requires_grad());
  std::vector<at::Tensor> trainable;
  for (const auto& p : model->parameters())
    if (p.requires_grad()) trainable.push_back(p);
  const at::Tensor x = torch::randn({8, 1, 28, 28});
  const at::Tensor y = torch::randint(0, 10, {8}, torch::kLong);
  // The statistics one training-mode forward at W gives: what NSO at σ = 0 must give too, once per step
  // (two passes at W, their updates averaged), not twice.
  fm::Model reference = fm::load_scripted_model(kFixtures + "/tiny_bn_net.pt");
  reference->train();
  {
    torch::NoGradGuard no_grad;
    reference(x);
  }
  auto base = std::make_shared<torch::optim::SGD>(trainable, torch::optim::SGDOptions(0.0));
  auto method = flatmin::optim::make_method(flatmin::optim::MethodSpec().name("nso").sigma(0.0));
  flatmin::optim::PerturbedOptimizer opt(base, method);
  opt.track_buffers(model->buffers());
  model->train();
  opt.step([&] {
    auto loss = torch::cross_entropy_loss(model(x), y);
    loss.backward();
    return loss;
  });
  const auto got = model->named_buffers(), want = reference->named_buffers();
  EXPECT_TRUE(torch::allclose(got["features.1.running_mean"], want["features.1.running_mean"], 1e-6, 1e-7));
  EXPECT_TRUE(torch::allclose(got["features.1.running_var"], want["features.1.running_var"], 1e-6, 1e-7));
  EXPECT_EQ(got["features.1.num_batches_tracked"].item<int64_t>(), 1);
  EXPECT_EQ(params["scale"].item<float>(), 1.0f);
}

TEST(ScriptedModel, SaysWhenItDoesNotFitTheData) {
  fm::Model model = fm::load_scripted_model(kFixtures + "/tiny_cnn.pt");
  fm::check_model_fits(model, torch::rand({2, 1, 28, 28}), 10, "m.pt");
  std::string message = error_of([&] { fm::check_model_fits(model, torch::rand({2, 3, 28, 28}), 10, "m.pt"); });
  EXPECT_NE(message.find("m.pt: does not accept inputs [2, 3, 28, 28]"), std::string::npos) << message;
  EXPECT_NE(message.find("channels"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  message = error_of([&] { fm::check_model_fits(model, torch::rand({2, 1, 28, 28}), 5, "m.pt"); });
  EXPECT_NE(message.find("to [2, 10], not to logits [2, 5]"), std::string::npos) << message;
  const fs::path dir = scratch("bad");
  std::ofstream(dir / "junk.pt") << "not a zip archive";
  message = error_of([&] { fm::load_scripted_model((dir / "junk.pt").string()); });
  EXPECT_NE(message.find("junk.pt: not a TorchScript file"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  message = error_of([&] { fm::load_scripted_model((dir / "missing.pt").string()); });
  EXPECT_NE(message.find("missing.pt: cannot open"), std::string::npos) << message;
  fs::remove_all(dir);
}

TEST(ScriptedModel, ACheckpointCarriesTheArchitecture) {
  const fs::path dir = scratch("ckpt");
  fs::copy_file(kFixtures + "/tiny_bn_net.pt", dir / "model.pt");
  const auto spec = fm::ModelSpec().name("torchscript").file((dir / "model.pt").string());
  fm::Model model = fm::make_model(spec);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.add_(0.25);
  }
  flatmin::training::save_checkpoint((dir / "m.ckpt").string(), spec, model, "{}", at::Tensor(), at::Tensor(), 1);
  fs::remove(dir / "model.pt");  // the checkpoint must not need it
  const auto loaded = flatmin::training::load_checkpoint((dir / "m.ckpt").string());
  ASSERT_NE(fm::as_scripted(loaded.model), nullptr);
  model->eval();
  loaded.model->eval();
  const at::Tensor x = torch::randn({4, 1, 28, 28});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(loaded.model(x), model(x)));
  fs::remove_all(dir);
}

// A checkpoint of a network with a smooth activation rebuilds that network, not the ReLU one.
TEST(ScriptedModel, ACheckpointCarriesTheActivation) {
  const fs::path dir = scratch("activation");
  const auto spec = fm::ModelSpec().name("mlp").width(6).activation("gelu");
  fm::Model model = fm::make_model(spec);
  flatmin::training::save_checkpoint((dir / "m.ckpt").string(), spec, model, "{}", at::Tensor(), at::Tensor(), 1);
  const auto loaded = flatmin::training::load_checkpoint((dir / "m.ckpt").string());
  EXPECT_EQ(loaded.spec.activation(), "gelu");
  const at::Tensor x = torch::randn({4, 1, 28, 28});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(loaded.model(x), model(x)));
  fs::remove_all(dir);
}

TEST(Export, PythonGetsFlatminsLogits) {
  const fs::path dir = scratch("export");
  torch::manual_seed(1);
  std::vector<std::pair<std::string, fm::ModelSpec>> models{
      {"mlp", fm::ModelSpec().name("mlp").width(8)},
      {"cnn", fm::ModelSpec().name("cnn").width(4)},
      {"resnet18", fm::ModelSpec().name("resnet18").width(2).in_channels(3).image_size(16).num_classes(5)},
      // Smooth activations export as the same TorchScript calls (torch.gelu, torch.silu, torch.softplus).
      {"mlp-softplus", fm::ModelSpec().name("mlp").width(8).activation("softplus")},
      {"cnn-silu", fm::ModelSpec().name("cnn").width(4).activation("silu")},
      {"resnet18-gelu",
       fm::ModelSpec().name("resnet18").width(2).in_channels(3).image_size(16).num_classes(5).activation("gelu")},
      {"scripted", fm::ModelSpec().name("torchscript").file(kFixtures + "/tiny_bn_net.pt")}};
  for (auto& [name, spec] : models) {
    fm::Model model = fm::make_model(spec);
    {
      // Non-trivial running statistics: an exported ResNet must use them.
      torch::NoGradGuard no_grad;
      for (auto& b : model->named_buffers())
        if (b.key().find("running_") != std::string::npos) b.value().uniform_(0.5, 1.5);
    }
    model->eval();
    const at::Tensor x = torch::randn({5, spec.in_channels(), spec.image_size(), spec.image_size()});
    at::Tensor logits;
    {
      torch::NoGradGuard no_grad;
      logits = model(x);
    }
    fm::export_torchscript(model, spec, (dir / (name + ".pt")).string());
    write_pickle(dir / (name + ".inputs.pt"), x);
    write_pickle(dir / (name + ".logits.pt"), logits);
  }
  const std::string command = "/usr/bin/python3 " + std::string(FLATMIN_SOURCE_DIR) + "/tests/models/compare_logits.py " +
                              dir.string();
  EXPECT_EQ(std::system(command.c_str()), 0) << command << " (needs Debian's python3-torch)";
  fs::remove_all(dir);
}

}  // namespace scripted_test
