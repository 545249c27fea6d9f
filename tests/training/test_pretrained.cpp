// Fine-tuning from a pretrained checkpoint (--init): what is loaded, what is re-initialised, what stays
// frozen, bad init files; and the split options fine-tuning tasks use (label noise, a given normalisation).
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "flatmin/core/error.h"
#include "flatmin/data/dataset.h"
#include "flatmin/training/checkpoint.h"
#include "flatmin/training/pretrained.h"
#include "flatmin/training/run.h"
#include "training/blobs.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace pretrained_test {

using namespace flatmin;
using namespace flatmin::training;
using flatmin::testing::blobs;

namespace {

// A fresh, existing scratch directory.
std::string fresh_dir(const std::string& name) {
  const std::string dir = flatmin::testing::scratch_dir(name);
  std::filesystem::create_directories(dir);
  return dir;
}

RunConfig config_for(const std::string& model, const std::string& method, uint64_t seed) {
  return RunConfig()
      .method(optim::MethodSpec().name(method).sigma(0.05).k(1))
      .model(models::ModelSpec().name(model).width(model == "mlp" ? 16 : 4))
      .split(data::SplitOptions().val_size(16))  // ResNet: no batch of 1 at 1×1 in stage 4
      .optimizer(optim::BaseOptimizerOptions().lr(0.05).momentum(0.9).weight_decay(1e-3))
      .trainer(TrainerOptions().epochs(2).batch_size(16))
      .seed(seed);
}

// A network pretrained on classes {0, 1} of the blobs, saved as a checkpoint; returns its path.
std::string pretrain(const std::string& model, const std::string& dir) {
  RunConfig config = config_for(model, "sgd", 11);
  config.split().classes({0, 1});
  const RunResult r = run_training(config, blobs(40, 10));
  const std::string path = dir + "/pre-" + model + ".ckpt";
  save_checkpoint(path, r.spec, r.model, config.to_json(), r.splits.channel_mean, r.splits.channel_std, 2);
  return path;
}

}  // namespace

// The test: lr = 0 leaves every pretrained weight bitwise unchanged, and the new head is the only
// re-initialised tensor (here with NSO: its perturbations must be undone exactly too, and BatchNorm).
TEST(Pretrained, LrZeroKeepsEveryPretrainedWeightAndOnlyTheHeadIsNew) {
  const std::string dir = fresh_dir("pretrained-lr0");
  for (const std::string model : {"mlp", "resnet18"}) {
    const std::string path = pretrain(model, dir);
    const CheckpointContents pre = load_checkpoint(path);
    RunConfig config = config_for(model, "nso", 3);
    config.optimizer().lr(0.0);
    config.init(InitOptions().path(path));
    config = with_pretrained_defaults(config);  // three classes now: a new classifier
    EXPECT_EQ(config.init().checksum(), pre.checksum());
    const RunResult r = run_training(config, blobs(40, 10));
    ASSERT_TRUE(r.pretrained.has_value());
    const std::string head = models::classifier_name(r.spec);
    EXPECT_EQ(r.pretrained->reinitialised, (std::vector<std::string>{head + ".weight", head + ".bias"})) << model;
    const auto before = pre.model->named_parameters();
    for (const auto& p : r.model->named_parameters()) {
      if (p.key().rfind(head + ".", 0) == 0) {
        EXPECT_EQ(p.value().size(0), 3) << p.key();
        EXPECT_NE(p.value().sizes(), before[p.key()].sizes()) << p.key();
      } else {
        EXPECT_TRUE(torch::equal(p.value(), before[p.key()])) << model << ": " << p.key() << " moved with lr = 0";
      }
    }
  }
  std::filesystem::remove_all(dir);
}

TEST(Pretrained, SameClassesKeepTheHeadUnlessReset) {
  const std::string dir = fresh_dir("pretrained-head");
  const std::string path = pretrain("mlp", dir);
  const CheckpointContents pre = load_checkpoint(path);
  RunConfig config = config_for("mlp", "sgd", 3);
  config.split().classes({0, 1});
  config.optimizer().lr(0.0);
  config.init(InitOptions().path(path));
  RunResult kept = run_training(with_pretrained_defaults(config), blobs(40, 10));
  EXPECT_TRUE(kept.pretrained->reinitialised.empty());
  EXPECT_TRUE(torch::equal(kept.model->named_parameters()["fc2.weight"], pre.model->named_parameters()["fc2.weight"]));
  config.init().reset_head(true);
  RunResult reset = run_training(with_pretrained_defaults(config), blobs(40, 10));
  EXPECT_EQ(reset.pretrained->reinitialised.size(), 2u);
  EXPECT_FALSE(torch::equal(reset.model->named_parameters()["fc2.weight"], pre.model->named_parameters()["fc2.weight"]));
  std::filesystem::remove_all(dir);
}

TEST(Pretrained, KeepsThePretrainedNormalisationAndRecordsItInTheConfig) {
  const std::string dir = fresh_dir("pretrained-norm");
  const std::string path = pretrain("mlp", dir);
  const CheckpointContents pre = load_checkpoint(path);
  RunConfig config = config_for("mlp", "sgd", 3);
  config.split().classes({2});  // other pixels: their own statistics would differ
  config.init(InitOptions().path(dir));  // a directory: its model.ckpt (absent here) ...
  EXPECT_THROW(with_pretrained_defaults(config), flatmin::Error);
  config.init().path(path);
  const RunConfig resolved = with_pretrained_defaults(config);
  ASSERT_EQ(resolved.split().mean().size(), 1u);
  EXPECT_DOUBLE_EQ(resolved.split().mean()[0], pre.channel_mean[0].item<double>());
  EXPECT_DOUBLE_EQ(resolved.split().std()[0], pre.channel_std[0].item<double>());
  EXPECT_EQ(RunConfig::from_json(resolved.to_json()).to_json(), resolved.to_json());
  const RunResult r = run_training(resolved, blobs(40, 10));
  EXPECT_TRUE(torch::allclose(r.splits.channel_mean.to(torch::kDouble), pre.channel_mean.to(torch::kDouble)));
  std::filesystem::remove_all(dir);
}

TEST(Pretrained, FrozenParametersDoNotMoveAndTheOthersDo) {
  const std::string dir = fresh_dir("pretrained-freeze");
  const std::string path = pretrain("mlp", dir);
  const CheckpointContents pre = load_checkpoint(path);
  RunConfig config = config_for("mlp", "sam", 3);
  config.init(InitOptions().path(path).freeze({"fc1"}));
  const RunResult r = run_training(with_pretrained_defaults(config), blobs(40, 10));
  EXPECT_EQ(r.pretrained->frozen, (std::vector<std::string>{"fc1.weight", "fc1.bias"}));
  const auto before = pre.model->named_parameters();
  const auto after = r.model->named_parameters();
  EXPECT_TRUE(torch::equal(after["fc1.weight"], before["fc1.weight"]));
  EXPECT_TRUE(torch::equal(after["fc1.bias"], before["fc1.bias"]));
  config.init().freeze({"fc9*"});
  try {
    run_training(with_pretrained_defaults(config), blobs(40, 10));
    FAIL() << "a pattern matching nothing was accepted";
  } catch (const flatmin::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'fc9*' matches no parameter"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

TEST(Pretrained, RejectsWrongShapedCorruptOrChangedInitFilesWithOneLine) {
  const std::string dir = fresh_dir("pretrained-bad");
  // A CNN built for 3-channel 32 px images cannot start a run on 1-channel 8 px blobs.
  torch::manual_seed(0);
  const models::ModelSpec rgb = models::ModelSpec().name("cnn").width(4).in_channels(3).image_size(32).num_classes(2);
  const std::string wrong = dir + "/rgb.ckpt";
  save_checkpoint(wrong, rgb, models::make_model(rgb), "{}", at::Tensor(), at::Tensor(), 1);
  RunConfig config = config_for("cnn", "sgd", 1);
  config.init(InitOptions().path(wrong));
  try {
    run_training(with_pretrained_defaults(config), blobs(40, 10));
    FAIL() << "a wrong-shape init file was accepted";
  } catch (const flatmin::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(wrong + ": the pretrained network takes 3×32×32 inputs, the data is 1×8×8"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos);
  }
  // Corrupt: one flipped byte in the payload.
  const std::string good = pretrain("mlp", dir);
  const std::string corrupt = dir + "/corrupt.ckpt";
  std::filesystem::copy_file(good, corrupt);
  {
    std::fstream f(corrupt, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x5a');
  }
  config = config_for("mlp", "sgd", 1);
  config.init(InitOptions().path(corrupt));
  EXPECT_THROW(with_pretrained_defaults(config), flatmin::Error);
  // Missing.
  config.init().path(dir + "/nonexistent.ckpt");
  try {
    with_pretrained_defaults(config);
    FAIL();
  } catch (const flatmin::Error& e) {
    EXPECT_NE(std::string(e.what()).find("nonexistent.ckpt: init file not found"), std::string::npos) << e.what();
  }
  // Changed since the run was configured (a resumed run reading it again).
  config.init().path(good);
  RunConfig resolved = with_pretrained_defaults(config);
  resolved.init().checksum("00000000");
  EXPECT_THROW(run_training(resolved, blobs(40, 10)), flatmin::Error);
  std::filesystem::remove_all(dir);
}

TEST(Splits, LabelNoiseFlipsExactlyTheFractionToOtherClassesOnTheTrainingSplitOnly) {
  const auto data = blobs(100, 20);  // 300 training examples, 3 classes
  data::SplitOptions options = data::SplitOptions().val_size(50).seed(9);
  const data::Splits clean = data::make_splits(data, options);
  const data::Splits noisy = data::make_splits(data, options.label_noise(0.2));
  ASSERT_TRUE(torch::equal(clean.train.inputs, noisy.train.inputs));  // the same examples
  const at::Tensor changed = clean.train.targets.ne(noisy.train.targets);
  EXPECT_EQ(changed.sum().item<int64_t>(), 50);  // round(0.2 · 250)
  EXPECT_TRUE(torch::equal(changed, noisy.noisy_labels));
  EXPECT_TRUE(torch::equal(clean.val.targets, noisy.val.targets));
  EXPECT_TRUE(torch::equal(clean.test.targets, noisy.test.targets));
  EXPECT_TRUE(torch::equal(noisy.train.targets, data::make_splits(data, options).train.targets));  // seeded
  EXPECT_THROW(data::make_splits(data, data::SplitOptions().val_size(50).label_noise(1.0)), flatmin::Error);
}

}  // namespace pretrained_test
