// Checkpoints: exact round trips, and clear rejection of every kind of damaged file.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "flatmin/core/error.h"
#include "flatmin/optim/base_optimizer.h"
#include "flatmin/training/checkpoint.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace checkpoint_test {

using namespace flatmin;
using namespace flatmin::training;

namespace {

std::string scratch(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("flatmin-ckpt-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

void expect_error(const std::string& path, const std::string& keyword) {
  try {
    load_checkpoint(path);
    FAIL() << "no error for " << keyword;
  } catch (const flatmin::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path), std::string::npos) << what;
    EXPECT_NE(what.find(keyword), std::string::npos) << what;
  }
}

struct Saved {
  models::ModelSpec spec = models::ModelSpec().name("resnet18").width(4).in_channels(1).num_classes(10);
  models::Model model;
  std::string path;
};

Saved save_resnet(const std::string& name, const torch::optim::Optimizer* optimizer = nullptr, models::Model model = {}) {
  Saved s;
  torch::manual_seed(3);
  s.model = model ? model : models::make_model(s.spec);
  // Move BatchNorm statistics away from their initial values so that buffers are checked too.
  s.model->train();
  for (int i = 0; i < 3; ++i) s.model.forward(torch::randn({4, 1, 28, 28}));
  s.path = scratch(name);
  save_checkpoint(s.path, s.spec, s.model, R"({"seed": 7})", torch::tensor({0.25f}), torch::tensor({0.5f}), 4, optimizer);
  return s;
}

TEST(Checkpoint, RoundTripRebuildsTheModelExactly) {
  const Saved s = save_resnet("round-trip.ckpt");
  const CheckpointContents c = load_checkpoint(s.path);
  EXPECT_EQ(c.spec.name(), "resnet18");
  EXPECT_EQ(c.spec.width(), 4);
  EXPECT_EQ(c.config_json, R"({"seed": 7})");
  EXPECT_EQ(c.epoch, 4);
  EXPECT_TRUE(at::equal(c.channel_mean, torch::tensor({0.25f})));
  EXPECT_TRUE(at::equal(c.channel_std, torch::tensor({0.5f})));
  const auto a = s.model->named_parameters(), b = c.model->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& p : a) EXPECT_TRUE(at::equal(p.value(), b[p.key()])) << p.key();
  const auto ba = s.model->named_buffers(), bb = c.model->named_buffers();
  ASSERT_EQ(ba.size(), bb.size());
  for (const auto& p : ba) EXPECT_TRUE(at::equal(p.value(), bb[p.key()])) << p.key();
  s.model->eval();
  c.model->eval();
  const at::Tensor x = torch::randn({2, 1, 28, 28});
  EXPECT_TRUE(at::equal(s.model.forward(x), c.model.forward(x)));
}

TEST(Checkpoint, OptimizerStateRoundTrips) {
  torch::manual_seed(5);
  const models::ModelSpec spec = models::ModelSpec().name("mlp").width(8);
  models::Model model = models::make_model(spec);
  auto opt = optim::make_base_optimizer(model->parameters(), optim::BaseOptimizerOptions().lr(0.1).momentum(0.9));
  const at::Tensor x = torch::randn({8, 1, 28, 28});
  const at::Tensor y = torch::randint(0, 10, {8}, torch::kLong);
  auto step = [&](models::Model& m, torch::optim::Optimizer& o) {
    o.zero_grad();
    torch::nn::functional::cross_entropy(m.forward(x), y).backward();
    o.step();
  };
  step(model, *opt);  // momentum buffers now exist
  const std::string path = scratch("optimizer.ckpt");
  save_checkpoint(path, spec, model, "{}", {}, {}, 1, opt.get());
  CheckpointContents c = load_checkpoint(path);
  auto opt2 = optim::make_base_optimizer(c.model->parameters(), optim::BaseOptimizerOptions().lr(0.1).momentum(0.9));
  load_optimizer_state(path, *opt2);
  step(model, *opt);
  step(c.model, *opt2);
  const auto a = model->parameters(), b = c.model->parameters();
  for (size_t j = 0; j < a.size(); ++j) EXPECT_TRUE(at::equal(a[j], b[j]));
  // A checkpoint without optimizer state says so.
  const Saved s = save_resnet("no-optimizer.ckpt");
  EXPECT_THROW(load_optimizer_state(s.path, *opt2), flatmin::Error);
}

TEST(Checkpoint, DamagedFilesAreRejectedWithTheirName) {
  const Saved s = save_resnet("damaged.ckpt");
  const std::string good = read_bytes(s.path);
  const std::string path = scratch("bad.ckpt");

  write_bytes(path, good.substr(0, good.size() - 100));
  expect_error(path, "truncated");
  write_bytes(path, good.substr(0, 10));
  expect_error(path, "not a flatmin checkpoint");
  write_bytes(path, "");
  expect_error(path, "not a flatmin checkpoint");
  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x10;
  write_bytes(path, flipped);
  expect_error(path, "checksum mismatch");
  std::string magic = good;
  magic[0] = 'X';
  write_bytes(path, magic);
  expect_error(path, "bad magic");
  std::string version = good;
  version[8] = 99;
  write_bytes(path, version);
  expect_error(path, "unsupported checkpoint version 99");
  write_bytes(path, good + "junk");
  expect_error(path, "trailing bytes");
  expect_error(scratch("does-not-exist.ckpt"), "cannot open");
}

TEST(Checkpoint, WritingIsAtomicAndLeavesNoTemporaryFile) {
  const Saved s = save_resnet("atomic.ckpt");
  EXPECT_FALSE(std::filesystem::exists(s.path + ".tmp"));
  // Overwriting an existing checkpoint replaces it whole.
  const Saved again = save_resnet("atomic.ckpt");
  EXPECT_NO_THROW(load_checkpoint(again.path));
}

}  // namespace

// Found by fuzz_checkpoint (it matched the CRC through libFuzzer's comparison tracing): a payload whose
// TorchScript code does not parse made LibTorch throw std::runtime_error, which escaped the reader.
TEST(CheckpointFuzzRegression, UnparsableTorchScriptIsAFlatminError) {
  const std::string path = std::string(FLATMIN_FUZZ_REGRESSIONS) + "/checkpoint/torchscript-parse-error.bin";
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in.good()) << path;
  const std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  try {
    flatmin::training::parse_checkpoint(bytes.data(), bytes.size(), "fuzz-regression");
    FAIL() << "a damaged checkpoint was accepted";
  } catch (const flatmin::Error& e) {
    EXPECT_NE(std::string(e.what()).find("fuzz-regression: "), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one line: " << e.what();
  }
}

}  // namespace checkpoint_test
