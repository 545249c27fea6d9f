/// Tests for flatmin::models: shapes, exact parameter counts (derived by formula from the architecture),
/// ResNet structure, BatchNorm buffers and modes, gradient flow, serialisation, seeding and validation.

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/Functions.h>
#include <torch/serialize.h>
#include <torch/utils.h>

#include "flatmin/core/error.h"
#include "flatmin/models/models.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace models_test {

namespace fm = flatmin::models;

namespace {

const std::vector<std::string> kNames = {"mlp", "cnn", "resnet18", "resnet34"};

/// Small ResNets keep the binary fast; MLP/CNN use their defaults.
fm::Model make(const std::string& name, int64_t channels = 1, int64_t size = 28, int64_t width = -1,
               int64_t classes = 10) {
  if (width < 0) width = name.rfind("resnet", 0) == 0 ? 8 : 0;
  return fm::make_model(
      fm::ModelSpec().name(name).in_channels(channels).image_size(size).num_classes(classes).width(width));
}

// Parameter counts of single layers, by hand.
int64_t conv_params(int64_t in, int64_t out, int64_t k, bool bias) { return in * out * k * k + (bias ? out : 0); }
int64_t linear_params(int64_t in, int64_t out) { return in * out + out; }
int64_t bn_params(int64_t c) { return 2 * c; }  // weight + bias; running stats are buffers

int64_t expected_cnn_params(int64_t c, int64_t size, int64_t width, int64_t hidden, int64_t classes) {
  const int64_t side = size / 4;  // two 2×2 pools after size-preserving 3×3 convs
  return conv_params(c, width, 3, true) + conv_params(width, 2 * width, 3, true) +
         linear_params(2 * width * side * side, hidden) + linear_params(hidden, classes);
}

int64_t expected_resnet_params(const std::vector<int64_t>& blocks, int64_t c, int64_t width, int64_t classes) {
  int64_t total = conv_params(c, width, 3, false) + bn_params(width);  // stem
  int64_t in = width;
  for (size_t stage = 0; stage < blocks.size(); ++stage) {
    const int64_t planes = width << stage;
    for (int64_t b = 0; b < blocks[stage]; ++b) {
      const int64_t stride = (stage > 0 && b == 0) ? 2 : 1;
      total += conv_params(in, planes, 3, false) + bn_params(planes) + conv_params(planes, planes, 3, false) +
               bn_params(planes);
      if (stride != 1 || in != planes) total += conv_params(in, planes, 1, false) + bn_params(planes);
      in = planes;
    }
  }
  return total + linear_params(in, classes);
}

/// The message of the flatmin::Error that `f` throws ("" and a failure if it throws none).
template <typename F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const flatmin::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected flatmin::Error";
  return "";
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

int64_t count_blocks(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& m : module.modules(/*include_self=*/false)) n += m->as<fm::BasicBlockImpl>() != nullptr;
  return n;
}

}  // namespace

TEST(Models, OutputShapesForEveryModelChannelCountAndSize) {
  torch::manual_seed(0);
  for (const auto& name : kNames) {
    for (int64_t c : {1, 3}) {
      for (int64_t size : {28, 32}) {
        auto model = make(name, c, size);
        for (bool train : {true, false}) {
          model->train(train);
          for (int64_t batch : {1, 3}) {
            const auto y = model(at::randn({batch, c, size, size}));
            SCOPED_TRACE(name + " c=" + std::to_string(c) + " size=" + std::to_string(size) +
                         " train=" + std::to_string(train) + " batch=" + std::to_string(batch));
            EXPECT_EQ(y.sizes(), (at::IntArrayRef{batch, 10}));
            EXPECT_EQ(y.scalar_type(), at::kFloat);
            EXPECT_TRUE(at::isfinite(y).all().item<bool>());
          }
        }
      }
    }
  }
  // num_classes reaches the head.
  for (const auto& name : kNames) {
    EXPECT_EQ(make(name, 3, 32, -1, 7)(at::randn({2, 3, 32, 32})).sizes(), (at::IntArrayRef{2, 7})) << name;
  }
}

TEST(Models, MlpParameterCount) {
  // 784→128→10: 784·128 + 128 + 128·10 + 10.
  EXPECT_EQ(fm::count_parameters(*make("mlp").module()), 101770);
  EXPECT_EQ(fm::count_parameters(*make("mlp", 3, 32).module()), linear_params(3 * 32 * 32, 128) + linear_params(128, 10));
  // A non-zero width sets the hidden size.
  EXPECT_EQ(fm::count_parameters(*make("mlp", 1, 28, 64).module()), linear_params(784, 64) + linear_params(64, 10));
}

TEST(Models, CnnParameterCount) {
  EXPECT_EQ(expected_cnn_params(1, 28, 32, 128, 10), 421642);  // the formula itself, pinned
  for (int64_t c : {1, 3}) {
    for (int64_t size : {28, 32}) {
      EXPECT_EQ(fm::count_parameters(*make("cnn", c, size).module()), expected_cnn_params(c, size, 32, 128, 10))
          << "c=" << c << " size=" << size;
    }
  }
  // A non-zero width sets the conv width; the hidden layer stays 128.
  EXPECT_EQ(fm::count_parameters(*make("cnn", 1, 28, 8).module()), expected_cnn_params(1, 28, 8, 128, 10));
}

TEST(Models, ResNetParameterCount) {
  EXPECT_EQ(expected_resnet_params({2, 2, 2, 2}, 3, 16, 10), 701466);  // the formula itself, pinned
  EXPECT_EQ(fm::count_parameters(*make("resnet18", 3, 32, 16).module()), expected_resnet_params({2, 2, 2, 2}, 3, 16, 10));
  EXPECT_EQ(fm::count_parameters(*make("resnet18", 1, 28, 16).module()), expected_resnet_params({2, 2, 2, 2}, 1, 16, 10));
  EXPECT_EQ(fm::count_parameters(*make("resnet34", 3, 32, 16).module()), expected_resnet_params({3, 4, 6, 3}, 3, 16, 10));
  // Width 0 is the standard CIFAR ResNet (width 64), whose published sizes are 11,173,962 and 21,282,122.
  EXPECT_EQ(fm::count_parameters(*make("resnet18", 3, 32, 0).module()), 11173962);
  EXPECT_EQ(fm::count_parameters(*make("resnet34", 3, 32, 0).module()), 21282122);
}

TEST(Models, CountParametersSkipsFrozenParameters) {
  auto model = make("mlp");
  model->named_parameters()["fc2.bias"].set_requires_grad(false);
  EXPECT_EQ(fm::count_parameters(*model.module()), 101770 - 10);
}

TEST(Models, ResNetBlockStructure) {
  const std::map<std::string, std::vector<int64_t>> blocks = {{"resnet18", {2, 2, 2, 2}},
                                                              {"resnet34", {3, 4, 6, 3}}};
  const int64_t width = 8;
  for (const auto& [name, per_stage] : blocks) {
    auto model = make(name, 3, 32, width);
    int64_t total = 0;
    for (auto n : per_stage) total += n;
    EXPECT_EQ(count_blocks(*model.module()), total) << name;

    // Each block's first conv has the stage's width, so blocks per width = blocks per stage.
    std::map<int64_t, int64_t> blocks_of_width;
    int64_t shortcuts = 0;
    for (const auto& item : model->named_parameters()) {
      const auto& key = item.key();
      if (contains(key, ".conv1.weight")) ++blocks_of_width[item.value().size(0)];
      if (contains(key, ".shortcut.0.weight")) ++shortcuts;
    }
    for (size_t stage = 0; stage < 4; ++stage) {
      EXPECT_EQ(blocks_of_width[width << stage], per_stage[stage]) << name << " stage " << stage;
    }
    EXPECT_EQ(shortcuts, 3) << name << ": projection shortcuts only where stages 2–4 change shape";
    EXPECT_EQ(model->named_parameters()["stem.weight"].sizes(), (at::IntArrayRef{width, 3, 3, 3}));
    EXPECT_EQ(model->named_parameters()["head.weight"].sizes(), (at::IntArrayRef{10, 8 * width}));
  }
}

TEST(Models, WidthZeroMeansEachModelsDefault) {
  EXPECT_EQ(make("mlp", 1, 28, 0)->named_parameters()["fc1.weight"].size(0), 128);
  EXPECT_EQ(make("cnn", 1, 28, 0)->named_parameters()["conv1.weight"].size(0), 32);
  EXPECT_EQ(make("cnn", 1, 28, 0)->named_parameters()["fc1.weight"].size(0), 128);
  EXPECT_EQ(make("resnet18", 1, 28, 0)->named_parameters()["stem.weight"].size(0), 64);
  EXPECT_EQ(make("resnet18", 1, 28, 12)->named_parameters()["stem.weight"].size(0), 12);
}

TEST(Models, BatchNormBuffersExist) {
  // BatchNorm layers: stem + 2 per block + 3 projection shortcuts.
  const std::map<std::string, int64_t> bn_layers = {{"resnet18", 1 + 2 * 8 + 3}, {"resnet34", 1 + 2 * 16 + 3}};
  for (const auto& [name, expected] : bn_layers) {
    auto model = make(name);
    int64_t means = 0, vars = 0;
    for (const auto& item : model->named_buffers()) {
      if (contains(item.key(), "running_mean")) {
        ++means;
        EXPECT_TRUE(at::equal(item.value(), at::zeros_like(item.value()))) << item.key();
      }
      if (contains(item.key(), "running_var")) {
        ++vars;
        EXPECT_TRUE(at::equal(item.value(), at::ones_like(item.value()))) << item.key();
      }
    }
    EXPECT_EQ(means, expected) << name;
    EXPECT_EQ(vars, expected) << name;
    EXPECT_TRUE(model->named_buffers().contains("stem_bn.running_mean"));
    EXPECT_TRUE(model->named_buffers().contains("stages.0.bn1.running_var"));
  }
  EXPECT_TRUE(make("mlp")->buffers().empty());
  EXPECT_TRUE(make("cnn")->buffers().empty());
}

TEST(Models, TrainAndEvalModesDifferOnlyWithBatchNorm) {
  torch::manual_seed(1);
  const auto x = at::randn({4, 3, 32, 32});
  for (const std::string name : {"resnet18", "resnet34"}) {
    auto model = make(name, 3, 32);
    model->eval();
    const auto y_eval = model(x);
    const auto mean_before = model->named_buffers()["stem_bn.running_mean"].clone();
    model->train();
    const auto y_train = model(x);
    EXPECT_FALSE(at::allclose(y_train, y_eval, 1e-4, 1e-5)) << name;
    // Train mode updates the running statistics; eval mode leaves them.
    EXPECT_FALSE(at::equal(model->named_buffers()["stem_bn.running_mean"], mean_before)) << name;
    model->eval();
    const auto mean_after = model->named_buffers()["stem_bn.running_mean"].clone();
    model(x);
    EXPECT_TRUE(at::equal(model->named_buffers()["stem_bn.running_mean"], mean_after)) << name;
  }
  for (const std::string name : {"mlp", "cnn"}) {
    auto model = make(name, 3, 32);
    model->train();
    const auto y_train = model(x);
    model->eval();
    EXPECT_TRUE(at::equal(model(x), y_train)) << name;
  }
}

TEST(Models, GradientsReachEveryParameter) {
  torch::manual_seed(2);
  for (const auto& name : kNames) {
    auto model = make(name, 3, 28);
    model->train();
    model(at::randn({4, 3, 28, 28})).sum().backward();
    const auto params = model->named_parameters();
    ASSERT_FALSE(params.is_empty());
    for (const auto& item : params) {
      const auto& grad = item.value().grad();
      ASSERT_TRUE(grad.defined()) << name << ": " << item.key();
      EXPECT_TRUE(at::isfinite(grad).all().item<bool>()) << name << ": " << item.key();
      EXPECT_GT(grad.abs().sum().item<double>(), 0.0) << name << ": " << item.key();
    }
  }
}

TEST(Models, SaveLoadRoundTripGivesIdenticalOutputs) {
  for (const auto& name : kNames) {
    torch::manual_seed(3);
    auto saved = make(name, 3, 32);
    // Move the BatchNorm running stats off their initial values so that buffers must round-trip too.
    saved->train();
    for (int i = 0; i < 3; ++i) saved(at::randn({4, 3, 32, 32}));
    saved->eval();

    std::stringstream stream;
    torch::save(saved.module(), stream);

    torch::manual_seed(4);
    auto loaded = make(name, 3, 32);
    loaded->eval();
    const auto x = at::randn({2, 3, 32, 32});
    ASSERT_FALSE(at::equal(saved(x), loaded(x))) << name << ": different seeds should differ before loading";
    torch::load(loaded.module(), stream);
    EXPECT_TRUE(at::equal(saved(x), loaded(x))) << name;
    for (const auto& item : saved->named_buffers()) {
      EXPECT_TRUE(at::equal(item.value(), loaded->named_buffers()[item.key()])) << name << ": " << item.key();
    }
  }
}

TEST(Models, SameSeedGivesIdenticalInitialParameters) {
  for (const auto& name : kNames) {
    torch::manual_seed(5);
    auto a = make(name);
    torch::manual_seed(5);
    auto b = make(name);
    torch::manual_seed(6);
    auto c = make(name);
    const auto pa = a->named_parameters(), pb = b->named_parameters(), pc = c->named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    bool any_differs = false;
    for (const auto& item : pa) {
      EXPECT_TRUE(at::equal(item.value(), pb[item.key()])) << name << ": " << item.key();
      any_differs = any_differs || !at::equal(item.value(), pc[item.key()]);
    }
    EXPECT_TRUE(any_differs) << name << ": a different seed should change the initialisation";
  }
}

TEST(Models, ResNetInitialisation) {
  torch::manual_seed(7);
  auto model = make("resnet18", 3, 32, 16);
  // kaiming_normal_(fan_out, relu): std = sqrt(2 / (out_channels · k · k)) = ~0.059 for stage 3's first
  // conv, 32 → 64: fan_in would give √2 times more.
  const auto w = model->named_parameters()["stages.4.conv1.weight"];
  ASSERT_EQ(w.sizes(), (at::IntArrayRef{64, 32, 3, 3}));
  EXPECT_NEAR(w.std().item<double>(), std::sqrt(2.0 / (64 * 9)), 0.003);
  EXPECT_NEAR(w.mean().item<double>(), 0.0, 0.003);
  for (const auto& item : model->named_parameters()) {
    if (contains(item.key(), "bn") || contains(item.key(), "shortcut.1")) {
      const double fill = contains(item.key(), "weight") ? 1.0 : 0.0;
      EXPECT_TRUE(at::equal(item.value(), at::full_like(item.value(), fill))) << item.key();
    }
  }
}

TEST(Models, MakeModelRejectsInvalidSpecs) {
  auto message = error_message([] { make("transformer"); });
  EXPECT_TRUE(contains(message, "transformer")) << message;
  for (const auto& name : kNames) EXPECT_TRUE(contains(message, name)) << message;

  message = error_message([] { make("resnet50"); });
  EXPECT_TRUE(contains(message, "depth")) << message;
  EXPECT_TRUE(contains(message, "50")) << message;
  message = error_message([] { make("resnet"); });
  EXPECT_TRUE(contains(message, "resnet18")) << message;

  message = error_message([] { make("cnn", 1, 3); });
  EXPECT_TRUE(contains(message, "image_size")) << message;
  message = error_message([] { make("mlp", 0, 28); });
  EXPECT_TRUE(contains(message, "in_channels")) << message;
  message = error_message([] { make("resnet18", 1, 0); });
  EXPECT_TRUE(contains(message, "image_size")) << message;
  message = error_message([] { make("cnn", 1, 28, 0, 0); });
  EXPECT_TRUE(contains(message, "num_classes")) << message;
  message = error_message([] { fm::make_model(fm::ModelSpec().name("resnet18").width(-4)); });
  EXPECT_TRUE(contains(message, "width")) << message;

  // The modules check their own options too.
  message = error_message([] { fm::ResNet(fm::ResNetOptions(20, 3, 10)); });
  EXPECT_TRUE(contains(message, "depth")) << message;
  message = error_message([] { fm::Mlp(fm::MlpOptions(784, 10).hidden(0)); });
  EXPECT_TRUE(contains(message, "hidden")) << message;
}

// Each activation is the named function between the layers (checked on the MLP: fc2(act(fc1 x))); ReLU is
// the default; an unknown name is a one-line error.
TEST(Models, ActivationIsTheNamedNonlinearity) {
  const at::Tensor x = torch::randn({3, 1, 28, 28});
  const std::map<std::string, std::function<at::Tensor(const at::Tensor&)>> expected{
      {"relu", [](const at::Tensor& t) { return at::relu(t); }},
      {"gelu", [](const at::Tensor& t) { return at::gelu(t); }},
      {"silu", [](const at::Tensor& t) { return t * at::sigmoid(t); }},
      {"softplus", [](const at::Tensor& t) { return at::log1p(at::exp(t)); }}};
  for (const auto& [name, act] : expected) {
    torch::manual_seed(0);
    fm::Model model = fm::make_model(fm::ModelSpec().name("mlp").width(5).activation(name));
    torch::NoGradGuard no_grad;
    const auto params = model->named_parameters();
    const at::Tensor hidden = at::linear(x.flatten(1), params["fc1.weight"], params["fc1.bias"]);
    const at::Tensor logits = at::linear(act(hidden), params["fc2.weight"], params["fc2.bias"]);
    EXPECT_TRUE(torch::allclose(model(x), logits, 1e-5, 1e-6)) << name;
  }
  EXPECT_EQ(fm::ModelSpec().activation(), "relu");
  try {
    fm::make_model(fm::ModelSpec().name("resnet18").activation("tanh"));
    FAIL() << "no error for an unknown activation";
  } catch (const flatmin::Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown activation 'tanh' (valid: relu, gelu, silu, softplus)"),
              std::string::npos) << e.what();
  }
}

TEST(Models, NamesAreCaseInsensitive) {
  EXPECT_EQ(count_blocks(*make("ResNet18").module()), 8);
  EXPECT_EQ(fm::count_parameters(*make("MLP").module()), 101770);
}

TEST(Models, WrongInputShapeIsAnError) {
  auto cnn = make("cnn", 1, 28);
  auto message = error_message([&] { cnn(at::randn({2, 1, 32, 32})); });
  EXPECT_TRUE(contains(message, "CNN")) << message;
  auto mlp = make("mlp", 1, 28);
  message = error_message([&] { mlp(at::randn({2, 3, 28, 28})); });
  EXPECT_TRUE(contains(message, "784")) << message;
  auto resnet = make("resnet18", 3, 32);
  message = error_message([&] { resnet(at::randn({2, 1, 32, 32})); });
  EXPECT_TRUE(contains(message, "ResNet")) << message;
}

TEST(Models, ModelWrapsTheModule) {
  torch::manual_seed(8);
  auto model = make("cnn");
  EXPECT_TRUE(static_cast<bool>(model));
  EXPECT_FALSE(static_cast<bool>(fm::Model()));
  const auto x = at::randn({2, 1, 28, 28});
  EXPECT_TRUE(at::equal(model(x), model.forward(x)));
  // Copies share one module, so changing the parameters through one changes the other's outputs.
  auto copy = model;
  EXPECT_EQ(copy.module().get(), model.module().get());
  const auto before = copy(x);
  {
    at::NoGradGuard no_grad;
    model->named_parameters()["fc2.bias"].add_(1.0);
  }
  EXPECT_TRUE(at::allclose(copy(x), before + 1.0));
}

TEST(Models, DefaultThreadsServeTheModel) {
  // One thread for the small models (a second one slowed them here), every core for ResNets.
  EXPECT_EQ(flatmin::models::default_num_threads(flatmin::models::ModelSpec().name("mlp"), 8), 1);
  EXPECT_EQ(flatmin::models::default_num_threads(flatmin::models::ModelSpec().name("CNN"), 8), 1);
  EXPECT_EQ(flatmin::models::default_num_threads(flatmin::models::ModelSpec().name("resnet18"), 8), 8);
  EXPECT_EQ(flatmin::models::default_num_threads(flatmin::models::ModelSpec().name("resnet34"), 0), 1);
}

}  // namespace models_test
