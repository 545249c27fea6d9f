// Datasets: IDX pair loading, Fashion-MNIST discovery, deterministic splits and the seeded Batcher.
// Synthetic images carry their own index in pixel (0, 0, 0) ("marker"), so every split and batch can
// be traced back to the examples it holds.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "flatmin/core/error.h"
#include "flatmin/data/dataset.h"
#include "flatmin/data/idx.h"
#include "flatmin/data/sources.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace dataset_test {

namespace fs = std::filesystem;
using flatmin::data::Batch;
using flatmin::data::Batcher;
using flatmin::data::Dataset;
using flatmin::data::make_splits;
using flatmin::data::SplitOptions;
using flatmin::data::Splits;
using flatmin::data::TrainTest;

namespace {

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("flatmin_test_dataset_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string path() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

/// Expects `fn` to throw a flatmin::Error whose one-line message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << parts.front() << "'";
  } catch (const flatmin::Error& e) {
    const std::string msg = e.what();
    for (const std::string& part : parts) {
      EXPECT_NE(msg.find(part), std::string::npos) << "message lacks '" << part << "': " << msg;
    }
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message is not one line: " << msg;
  }
}

/// n examples of [channels, 3, 3], label i % num_classes, pixel (0, 0, 0) = i + offset, the rest random
/// with a per-channel offset and scale (so normalisation has something to do).
Dataset synthetic(int64_t n, int64_t channels, int64_t num_classes, int64_t offset, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  Dataset d;
  d.inputs = at::rand({n, channels, 3, 3}, gen, at::TensorOptions().dtype(at::kFloat));
  for (int64_t c = 0; c < channels; ++c) d.inputs.select(1, c).mul_(1.0 + c).add_(0.5 * c);
  d.inputs.select(1, 0).select(1, 0).select(1, 0).copy_(at::arange(offset, offset + n, at::kFloat));
  d.targets = at::arange(n, at::kLong).remainder(num_classes);
  d.num_classes = num_classes;
  return d;
}

TrainTest synthetic_pair(int64_t n_train, int64_t n_test, int64_t channels = 1, int64_t num_classes = 10) {
  return {synthetic(n_train, channels, num_classes, 0, 11), synthetic(n_test, channels, num_classes, 0, 12)};
}

/// The example indices a split holds, undoing the split's normalisation.
std::vector<int64_t> markers(const Dataset& d, const Splits& s) {
  const at::Tensor raw = d.inputs.select(1, 0).select(1, 0).select(1, 0) * s.channel_std[0] + s.channel_mean[0];
  const at::Tensor idx = raw.round().to(at::kLong);
  EXPECT_TRUE(at::allclose(raw, idx.to(at::kFloat), 0, 1e-2)) << "marker not recoverable";
  return std::vector<int64_t>(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.numel());
}

std::vector<int64_t> batch_markers(const Batch& b) {
  const at::Tensor idx = b.inputs.select(1, 0).select(1, 0).select(1, 0).round().to(at::kLong).contiguous();
  return std::vector<int64_t>(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.numel());
}

std::vector<int64_t> epoch_order(Batcher& batcher) {
  batcher.start_epoch();
  std::vector<int64_t> order;
  for (int64_t i = 0; i < batcher.num_batches(); ++i) {
    const auto m = batch_markers(batcher.batch(i));
    order.insert(order.end(), m.begin(), m.end());
  }
  return order;
}

bool same(const Dataset& a, const Dataset& b) {
  return a.num_classes == b.num_classes && a.inputs.sizes() == b.inputs.sizes() && at::equal(a.inputs, b.inputs) &&
         at::equal(a.targets, b.targets);
}

// ---------------------------------------------------------------- loading

TEST(LoadIdxPair, ScalesToUnitRangeAndAddsAChannel) {
  TempDir dir;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const at::Tensor images = at::randint(0, 256, {20, 5, 4}, gen, at::TensorOptions().dtype(at::kByte));
  const at::Tensor labels = at::arange(20, at::kLong).remainder(10).to(at::kByte);
  images[0][0][0] = 255;
  flatmin::data::write_idx(dir.file("img"), images, /*gzip=*/true);
  flatmin::data::write_idx(dir.file("lab"), labels);
  const Dataset d = flatmin::data::load_idx_pair(dir.file("img"), dir.file("lab"));
  EXPECT_EQ(d.inputs.scalar_type(), at::kFloat);
  EXPECT_EQ(d.inputs.sizes(), at::IntArrayRef({20, 1, 5, 4}));
  EXPECT_TRUE(at::equal(d.inputs.squeeze(1), images.to(at::kFloat) / 255.0f));
  EXPECT_EQ(d.inputs.max().item<float>(), 1.0f);
  EXPECT_EQ(d.targets.scalar_type(), at::kLong);
  EXPECT_TRUE(at::equal(d.targets, labels.to(at::kLong)));
  EXPECT_EQ(d.num_classes, 10);
  EXPECT_EQ(d.size(), 20);
}

TEST(LoadIdxPair, KeepsChannelsOfFourDimensionalImages) {
  TempDir dir;
  flatmin::data::write_idx(dir.file("img"), at::full({6, 3, 2, 2}, 51, at::kByte));
  flatmin::data::write_idx(dir.file("lab"), at::zeros({6}, at::kByte));
  const Dataset d = flatmin::data::load_idx_pair(dir.file("img"), dir.file("lab"), 2);
  EXPECT_EQ(d.inputs.sizes(), at::IntArrayRef({6, 3, 2, 2}));
  EXPECT_FLOAT_EQ(d.inputs[5][2][1][1].item<float>(), 0.2f);
  EXPECT_EQ(d.num_classes, 2);
}

TEST(LoadIdxPair, RejectsCountMismatchBadLabelsAndWrongTypes) {
  TempDir dir;
  const std::string img = dir.file("img"), lab = dir.file("lab");
  flatmin::data::write_idx(img, at::zeros({5, 2, 2}, at::kByte));
  flatmin::data::write_idx(lab, at::zeros({4}, at::kByte));
  expect_error([&] { flatmin::data::load_idx_pair(img, lab); }, {lab, "mismatch", img});

  flatmin::data::write_idx(lab, at::tensor({0, 1, 7, 2, 3}, at::kByte));
  expect_error([&] { flatmin::data::load_idx_pair(img, lab, 5); }, {lab, "label 7", "index 2", "out of range"});
  EXPECT_NO_THROW(flatmin::data::load_idx_pair(img, lab, 8));
  EXPECT_NO_THROW(flatmin::data::load_idx_pair(img, lab, 256));  // no uint8 wrap-around
  flatmin::data::write_idx(lab, at::tensor({0, 1, 255, 2, 3}, at::kByte));
  expect_error([&] { flatmin::data::load_idx_pair(img, lab, 255); }, {lab, "label 255", "out of range"});

  const std::string img16 = dir.file("img16");
  flatmin::data::write_idx(img16, at::zeros({5, 2, 2}, at::kShort));
  expect_error([&] { flatmin::data::load_idx_pair(img16, lab); }, {img16, "uint8"});
  const std::string img2d = dir.file("img2d");
  flatmin::data::write_idx(img2d, at::zeros({5, 4}, at::kByte));
  expect_error([&] { flatmin::data::load_idx_pair(img2d, lab); }, {img2d, "[N, H, W]"});
  const std::string lab2d = dir.file("lab2d");
  flatmin::data::write_idx(lab2d, at::zeros({5, 1}, at::kByte));
  expect_error([&] { flatmin::data::load_idx_pair(img, lab2d); }, {lab2d, "labels must be [N]"});
  expect_error([&] { flatmin::data::load_idx_pair(img, dir.file("missing")); }, {dir.file("missing"), "cannot open"});
}

void write_fashion_files(const TempDir& dir, int64_t n_train, int64_t n_test) {
  flatmin::data::write_idx(dir.file("train-images-idx3-ubyte.gz"), at::ones({n_train, 4, 4}, at::kByte), true);
  flatmin::data::write_idx(dir.file("train-labels-idx1-ubyte"),
                           at::arange(n_train, at::kLong).remainder(10).to(at::kByte));
  flatmin::data::write_idx(dir.file("t10k-images-idx3-ubyte"), at::ones({n_test, 4, 4}, at::kByte));
  flatmin::data::write_idx(dir.file("t10k-labels-idx1-ubyte.gz"),
                           at::arange(n_test, at::kLong).remainder(10).to(at::kByte), true);
}

TEST(LoadFashionMnist, FindsPlainAndGzippedFiles) {
  TempDir dir;
  write_fashion_files(dir, 30, 20);
  const TrainTest data = flatmin::data::load_fashion_mnist(dir.path());
  EXPECT_EQ(data.train.inputs.sizes(), at::IntArrayRef({30, 1, 4, 4}));
  EXPECT_EQ(data.test.inputs.sizes(), at::IntArrayRef({20, 1, 4, 4}));
  EXPECT_EQ(data.train.num_classes, 10);
  EXPECT_EQ(data.test.targets[13].item<int64_t>(), 3);
}

TEST(LoadFashionMnist, MissingDirectoryOrFileSaysHowToInstall) {
  TempDir dir;
  const std::string missing_dir = dir.file("nowhere");
  expect_error([&] { flatmin::data::load_fashion_mnist(missing_dir); },
               {missing_dir, "dataset-fashion-mnist", "--data-dir"});
  write_fashion_files(dir, 10, 10);
  fs::remove(dir.file("t10k-labels-idx1-ubyte.gz"));
  expect_error([&] { flatmin::data::load_fashion_mnist(dir.path()); },
               {dir.file("t10k-labels-idx1-ubyte"), "not found", "dataset-fashion-mnist", "--data-dir"});
}

TEST(LoadFashionMnist, DefaultDirectoryHonoursTheEnvironment) {
  const char* old = std::getenv("FLATMIN_DATA_DIR");
  const std::string saved = old ? old : "";
  ::setenv("FLATMIN_DATA_DIR", "/tmp/somewhere/else", 1);
  EXPECT_EQ(flatmin::data::default_fashion_mnist_dir(), "/tmp/somewhere/else");
  ::unsetenv("FLATMIN_DATA_DIR");
  EXPECT_EQ(flatmin::data::default_fashion_mnist_dir(), "/usr/share/datasets/fashion-mnist");
  if (old) ::setenv("FLATMIN_DATA_DIR", saved.c_str(), 1);
}

TEST(LoadFashionMnist, RealDatasetLoadsAndSplits) {
  const std::string dir = flatmin::data::default_fashion_mnist_dir();
  // No skip: the real data is part of the setup (scripts/setup.sh installs it); its absence is a failure.
  ASSERT_TRUE(fs::is_directory(dir)) << "Fashion-MNIST not installed in " << dir;
  const TrainTest data = flatmin::data::load_fashion_mnist(dir);
  EXPECT_EQ(data.train.inputs.sizes(), at::IntArrayRef({60000, 1, 28, 28}));
  EXPECT_EQ(data.test.inputs.sizes(), at::IntArrayRef({10000, 1, 28, 28}));
  EXPECT_GE(data.train.inputs.min().item<float>(), 0.0f);
  EXPECT_LE(data.train.inputs.max().item<float>(), 1.0f);
  const at::Tensor train_counts = data.train.targets.bincount();
  const at::Tensor test_counts = data.test.targets.bincount();
  EXPECT_TRUE(at::equal(train_counts, at::full({10}, 6000, at::kLong)));
  EXPECT_TRUE(at::equal(test_counts, at::full({10}, 1000, at::kLong)));

  const Splits s = make_splits(data, SplitOptions().seed(1));
  EXPECT_EQ(s.train.size(), 55000);
  EXPECT_EQ(s.val.size(), 5000);
  EXPECT_EQ(s.test.size(), 10000);
  EXPECT_NEAR(s.train.inputs.mean().item<double>(), 0.0, 1e-4);
  EXPECT_NEAR(s.train.inputs.std(/*unbiased=*/false).item<double>(), 1.0, 1e-4);
  EXPECT_NEAR(s.channel_mean[0].item<double>(), 0.286, 0.01);  // Fashion-MNIST's well-known statistics
  EXPECT_NEAR(s.channel_std[0].item<double>(), 0.353, 0.01);
}

// ---------------------------------------------------------------- Dataset::subset

TEST(DatasetSubset, SelectsRowsInTheGivenOrderAndChecksRange) {
  const Dataset d = synthetic(10, 2, 3, 0, 1);
  const Dataset s = d.subset(at::tensor({7, 2, 2}, at::kLong));
  EXPECT_EQ(s.size(), 3);
  EXPECT_EQ(s.num_classes, 3);
  EXPECT_TRUE(at::equal(s.inputs[0], d.inputs[7]));
  EXPECT_TRUE(at::equal(s.targets, at::tensor({1, 2, 2}, at::kLong)));
  EXPECT_THROW(d.subset(at::tensor({10}, at::kLong)), flatmin::Error);
  EXPECT_THROW(d.subset(at::tensor({-1}, at::kLong)), flatmin::Error);
  EXPECT_EQ(d.subset(at::empty({0}, at::kLong)).size(), 0);
  EXPECT_EQ(Dataset().size(), 0);
}

// ---------------------------------------------------------------- make_splits

TEST(MakeSplits, SameSeedSameSplitsDifferentSeedDifferentSplits) {
  const TrainTest data = synthetic_pair(500, 200);
  const auto opts = SplitOptions().val_size(100).test_size(50).seed(42);
  const Splits a = make_splits(data, opts);
  const Splits b = make_splits(data, opts);
  EXPECT_TRUE(same(a.train, b.train));
  EXPECT_TRUE(same(a.val, b.val));
  EXPECT_TRUE(same(a.test, b.test));
  EXPECT_TRUE(at::equal(a.channel_mean, b.channel_mean));
  // The global RNG does not move the splits.
  at::manual_seed(12345);
  (void)at::rand({100});
  EXPECT_TRUE(same(make_splits(data, opts).val, a.val));

  const Splits c = make_splits(data, SplitOptions().val_size(100).test_size(50).seed(43));
  EXPECT_NE(markers(a.val, a), markers(c.val, c));
  EXPECT_NE(markers(a.test, a), markers(c.test, c));
}

TEST(MakeSplits, ValidationAndTrainingAreDisjointAndCoverTheTrainingSet) {
  const TrainTest data = synthetic_pair(1000, 300);
  const Splits s = make_splits(data, SplitOptions().val_size(237).seed(7));
  EXPECT_EQ(s.val.size(), 237);
  EXPECT_EQ(s.train.size(), 763);
  EXPECT_EQ(s.test.size(), 300);
  std::vector<int64_t> all = markers(s.train, s);
  const std::vector<int64_t> val = markers(s.val, s);
  all.insert(all.end(), val.begin(), val.end());
  const std::set<int64_t> unique(all.begin(), all.end());
  EXPECT_EQ(unique.size(), 1000u) << "an example is in both splits or twice in one";
  EXPECT_EQ(*unique.begin(), 0);
  EXPECT_EQ(*unique.rbegin(), 999);
  // Targets travel with their images.
  for (const Dataset* d : {&s.train, &s.val}) {
    const std::vector<int64_t> m = markers(*d, s);
    for (size_t i = 0; i < m.size(); ++i) ASSERT_EQ(d->targets[i].item<int64_t>(), m[i] % 10);
  }
  EXPECT_EQ(make_splits(data, SplitOptions().val_size(0)).val.size(), 0);
}

TEST(MakeSplits, ClassSubsetsAreRemappedInTheOrderGiven) {
  const TrainTest data = synthetic_pair(1000, 300);
  const std::vector<int64_t> classes = {7, 2, 5};
  const Splits s = make_splits(data, SplitOptions().classes(classes).val_size(60).seed(3));
  EXPECT_EQ(s.train.num_classes, 3);
  EXPECT_EQ(s.val.num_classes, 3);
  EXPECT_EQ(s.test.num_classes, 3);
  EXPECT_EQ(s.train.size() + s.val.size(), 300);
  EXPECT_EQ(s.test.size(), 90);
  for (const Dataset* d : {&s.train, &s.val, &s.test}) {
    const std::vector<int64_t> m = markers(*d, s);
    for (size_t i = 0; i < m.size(); ++i) {
      const int64_t original = m[i] % 10;
      const int64_t expected = std::find(classes.begin(), classes.end(), original) - classes.begin();
      ASSERT_LT(expected, 3) << "example of class " << original << " was kept";
      ASSERT_EQ(d->targets[i].item<int64_t>(), expected);
    }
  }
}

TEST(MakeSplits, TrainPerClassGivesExactCountsDisjointFromValidation) {
  const TrainTest data = synthetic_pair(1000, 300);
  const Splits s = make_splits(data, SplitOptions().val_size(150).train_per_class(40).seed(9));
  EXPECT_TRUE(at::equal(s.train.targets.bincount(), at::full({10}, 40, at::kLong)));
  EXPECT_EQ(s.val.size(), 150);
  const std::vector<int64_t> t = markers(s.train, s), v = markers(s.val, s);
  std::set<int64_t> unique(t.begin(), t.end());
  unique.insert(v.begin(), v.end());
  EXPECT_EQ(unique.size(), t.size() + v.size());

  const Splits sub = make_splits(data, SplitOptions().classes({4, 1}).val_size(20).train_per_class(70).seed(9));
  EXPECT_TRUE(at::equal(sub.train.targets.bincount(), at::full({2}, 70, at::kLong)));
}

TEST(MakeSplits, TestSizeDrawsDistinctExamplesOfKeptClasses) {
  const TrainTest data = synthetic_pair(200, 300);
  const Splits s = make_splits(data, SplitOptions().classes({0, 3}).val_size(10).test_size(25).seed(5));
  EXPECT_EQ(s.test.size(), 25);
  const std::vector<int64_t> m = markers(s.test, s);
  EXPECT_EQ(std::set<int64_t>(m.begin(), m.end()).size(), 25u);
  for (int64_t x : m) EXPECT_TRUE(x % 10 == 0 || x % 10 == 3) << x;
}

TEST(MakeSplits, NormalisationStandardisesTheTrainingSplitPerChannel) {
  const TrainTest data = synthetic_pair(600, 200, /*channels=*/3);
  const Splits s = make_splits(data, SplitOptions().val_size(100).seed(1));
  ASSERT_EQ(s.channel_mean.sizes(), at::IntArrayRef({3}));
  ASSERT_EQ(s.channel_std.sizes(), at::IntArrayRef({3}));
  const at::Tensor x = s.train.inputs.transpose(0, 1).reshape({3, -1}).to(at::kDouble);
  const at::Tensor mean = x.mean(1), std = x.std(1, /*unbiased=*/false);
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(mean[c].item<double>(), 0.0, 1e-5) << "channel " << c;
    EXPECT_NEAR(std[c].item<double>(), 1.0, 1e-5) << "channel " << c;
  }
  // The constants are the raw training split's statistics, and val/test use the same ones.
  const Splits raw = make_splits(data, SplitOptions().val_size(100).seed(1).normalize(false));
  const at::Tensor r = raw.train.inputs.transpose(0, 1).reshape({3, -1}).to(at::kDouble);
  EXPECT_TRUE(at::allclose(s.channel_mean.to(at::kDouble), r.mean(1), 1e-5, 1e-5));
  EXPECT_TRUE(at::allclose(s.channel_std.to(at::kDouble), r.std(1, false), 1e-5, 1e-5));
  const at::Tensor m = s.channel_mean.view({1, 3, 1, 1}), sd = s.channel_std.view({1, 3, 1, 1});
  EXPECT_TRUE(at::allclose(s.val.inputs * sd + m, raw.val.inputs, 1e-4, 1e-4));
  EXPECT_TRUE(at::allclose(s.test.inputs * sd + m, raw.test.inputs, 1e-4, 1e-4));
}

TEST(MakeSplits, WithoutNormalisationInputsAreUntouched) {
  const TrainTest data = synthetic_pair(300, 100, 2);
  const Splits s = make_splits(data, SplitOptions().val_size(50).normalize(false));
  EXPECT_TRUE(at::equal(s.channel_mean, at::zeros({2})));
  EXPECT_TRUE(at::equal(s.channel_std, at::ones({2})));
  EXPECT_TRUE(at::equal(s.test.inputs, data.test.inputs));
  const std::vector<int64_t> m = markers(s.train, s);
  EXPECT_TRUE(at::equal(s.train.inputs, data.train.inputs.index_select(0, at::tensor(m, at::kLong))));
}

TEST(MakeSplits, ConstantChannelGetsTheStdFloorNotNaN) {
  TrainTest data = synthetic_pair(100, 50, 2);
  data.train.inputs.select(1, 1).fill_(0.25f);
  const Splits s = make_splits(data, SplitOptions().val_size(10));
  EXPECT_FLOAT_EQ(s.channel_std[1].item<float>(), 1e-8f);
  EXPECT_TRUE(at::isfinite(s.train.inputs).all().item<bool>());
  EXPECT_EQ(s.train.inputs.select(1, 1).abs().max().item<float>(), 0.0f);
}

// load_dataset keeps IDX images as uint8 pixels and make_splits converts only the examples it keeps: every
// split, label and statistic must be bitwise what converting all images first (load_idx_directory) gives.
TEST(MakeSplits, PixelsConvertedAfterChoosingEqualConvertingFirst) {
  TempDir dir;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const auto bytes = at::TensorOptions().dtype(at::kByte);
  flatmin::data::write_idx(dir.file("train-images-idx3-ubyte.gz"), at::randint(0, 256, {300, 5, 5}, gen, bytes), true);
  flatmin::data::write_idx(dir.file("train-labels-idx1-ubyte"), at::randint(0, 10, {300}, gen, bytes));
  flatmin::data::write_idx(dir.file("t10k-images-idx3-ubyte"), at::randint(0, 256, {120, 5, 5}, gen, bytes));
  flatmin::data::write_idx(dir.file("t10k-labels-idx1-ubyte"), at::randint(0, 10, {120}, gen, bytes));
  const TrainTest pixels = flatmin::data::load_dataset(flatmin::data::DataSource().dir(dir.path()));
  const TrainTest floats = flatmin::data::load_fashion_mnist(dir.path());
  ASSERT_EQ(pixels.train.inputs.scalar_type(), at::kByte);  // else this test compares nothing new
  ASSERT_EQ(floats.train.inputs.scalar_type(), at::kFloat);
  for (const SplitOptions& options :
       {SplitOptions().val_size(30).seed(3), SplitOptions().val_size(20).classes({7, 2, 5}).train_per_class(4).seed(4),
        SplitOptions().val_size(10).classes({1, 0}).test_size(9).label_noise(0.3).seed(5),
        SplitOptions().val_size(0).test_size(50).normalize(false).seed(6),
        SplitOptions().val_size(5).mean({0.25}).std({0.5}).seed(7)}) {
    const Splits a = make_splits(pixels, options);
    const Splits b = make_splits(floats, options);
    EXPECT_TRUE(same(a.train, b.train));
    EXPECT_TRUE(same(a.val, b.val));
    EXPECT_TRUE(same(a.test, b.test));
    EXPECT_EQ(a.train.inputs.scalar_type(), at::kFloat);
    EXPECT_TRUE(at::equal(a.channel_mean, b.channel_mean));
    EXPECT_TRUE(at::equal(a.channel_std, b.channel_std));
    EXPECT_EQ(a.noisy_labels.defined(), b.noisy_labels.defined());
    if (a.noisy_labels.defined()) {
      EXPECT_TRUE(at::equal(a.noisy_labels, b.noisy_labels));
    }
  }
  EXPECT_TRUE(at::equal(flatmin::data::float_inputs(pixels.test.inputs), floats.test.inputs));
}

TEST(MakeSplits, LeavesTheCallersDataUnchanged) {
  const TrainTest data = synthetic_pair(100, 50, 2);
  const at::Tensor train_before = data.train.inputs.clone(), test_before = data.test.inputs.clone();
  (void)make_splits(data, SplitOptions().val_size(10));
  EXPECT_TRUE(at::equal(data.train.inputs, train_before));
  EXPECT_TRUE(at::equal(data.test.inputs, test_before));
}

TEST(MakeSplits, RejectsOptionsThatCannotBeMet) {
  const TrainTest data = synthetic_pair(100, 50);
  auto split = [&](SplitOptions o) { return [&data, o] { make_splits(data, o); }; };
  expect_error(split(SplitOptions().classes({3, 10})), {"classes", "10", "out of range"});
  expect_error(split(SplitOptions().classes({-1})), {"classes", "out of range"});
  expect_error(split(SplitOptions().classes({2, 5, 2})), {"classes", "repeated"});
  expect_error(split(SplitOptions().val_size(101)), {"val_size", "101", "exceeds"});
  expect_error(split(SplitOptions().val_size(100)), {"val_size", "no training examples"});
  expect_error(split(SplitOptions().val_size(-1)), {"val_size", ">= 0"});
  expect_error(split(SplitOptions().val_size(10).train_per_class(10)), {"train_per_class", "fewer than 10"});
  expect_error(split(SplitOptions().val_size(10).train_per_class(-2)), {"train_per_class", ">= 0"});
  expect_error(split(SplitOptions().val_size(10).test_size(51)), {"test_size", "exceeds"});
  expect_error(split(SplitOptions().val_size(2).classes({1}).test_size(6)), {"test_size", "exceeds"});
  expect_error(split(SplitOptions().val_size(10).test_size(-3)), {"test_size", ">= 0"});
  TrainTest mismatched = data;
  mismatched.test.num_classes = 5;
  EXPECT_THROW(make_splits(mismatched, SplitOptions().val_size(10)), flatmin::Error);
  EXPECT_THROW(make_splits(TrainTest{}, SplitOptions()), flatmin::Error);
}

// ---------------------------------------------------------------- Batcher

TEST(Batcher, SameSeedSameOrderDifferentSeedDifferentOrder) {
  const Dataset d = synthetic(200, 1, 10, 0, 1);
  Batcher a(d, 16, true, 77), b(d, 16, true, 77), c(d, 16, true, 78);
  for (int epoch = 0; epoch < 3; ++epoch) {
    const auto oa = epoch_order(a);
    EXPECT_EQ(oa, epoch_order(b)) << "epoch " << epoch;
    EXPECT_NE(oa, epoch_order(c)) << "epoch " << epoch;
  }
}

TEST(Batcher, EveryExampleAppearsExactlyOncePerEpochInAFreshOrder) {
  const Dataset d = synthetic(103, 2, 10, 0, 1);
  Batcher batcher(d, 10, true, 5);
  EXPECT_EQ(batcher.num_batches(), 11);
  std::vector<int64_t> previous;
  for (int epoch = 0; epoch < 3; ++epoch) {
    batcher.start_epoch();
    std::vector<int64_t> seen;
    for (int64_t i = 0; i < batcher.num_batches(); ++i) {
      const Batch b = batcher.batch(i);
      const int64_t expected = i < 10 ? 10 : 3;
      ASSERT_EQ(b.inputs.sizes(), at::IntArrayRef({expected, 2, 3, 3}));
      ASSERT_EQ(b.targets.sizes(), at::IntArrayRef({expected}));
      EXPECT_TRUE(b.inputs.is_contiguous());
      const auto m = batch_markers(b);
      for (size_t k = 0; k < m.size(); ++k) EXPECT_EQ(b.targets[k].item<int64_t>(), m[k] % 10);
      seen.insert(seen.end(), m.begin(), m.end());
    }
    std::vector<int64_t> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> all(103);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(sorted, all) << "epoch " << epoch;
    EXPECT_NE(seen, all) << "epoch " << epoch << " was not shuffled";
    EXPECT_NE(seen, previous) << "epoch " << epoch << " repeated the previous order";
    previous = seen;
  }
}

TEST(Batcher, DropLastSkipsTheShortBatch) {
  const Dataset d = synthetic(103, 1, 10, 0, 1);
  Batcher batcher(d, 10, true, 5, /*drop_last=*/true);
  EXPECT_EQ(batcher.num_batches(), 10);
  const auto order = epoch_order(batcher);
  EXPECT_EQ(order.size(), 100u);
  EXPECT_EQ(std::set<int64_t>(order.begin(), order.end()).size(), 100u);
  EXPECT_THROW(batcher.batch(10), flatmin::Error);
  EXPECT_EQ(Batcher(d, 200, true, 5, true).num_batches(), 0);
  EXPECT_EQ(Batcher(d, 200, true, 5, false).num_batches(), 1);
}

TEST(Batcher, WithoutShuffleBatchesAreInOrder) {
  const Dataset d = synthetic(25, 1, 10, 0, 1);
  Batcher batcher(d, 7, false, 5);
  std::vector<int64_t> all(25);
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(epoch_order(batcher), all);
  EXPECT_EQ(epoch_order(batcher), all);
}

TEST(Batcher, RejectsOutOfRangeBatchesAndBadArguments) {
  const Dataset d = synthetic(25, 1, 10, 0, 1);
  Batcher batcher(d, 7, true, 5);
  expect_error([&] { batcher.batch(0); }, {"start_epoch"});
  batcher.start_epoch();
  expect_error([&] { batcher.batch(4); }, {"out of range"});
  expect_error([&] { batcher.batch(-1); }, {"out of range"});
  EXPECT_NO_THROW(batcher.batch(3));
  EXPECT_THROW(Batcher(d, 0, true, 5), flatmin::Error);
  EXPECT_THROW(Batcher(Dataset{}, 4, true, 5), flatmin::Error);
  EXPECT_THROW(batcher.set_generator_state(at::zeros({7}, at::kByte)), flatmin::Error);
  EXPECT_THROW(batcher.set_generator_state(at::zeros({7}, at::kFloat)), flatmin::Error);
}

TEST(Batcher, GeneratorStateRoundTripReproducesTheNextEpoch) {
  const Dataset d = synthetic(150, 1, 10, 0, 1);
  Batcher original(d, 32, true, 2024);
  epoch_order(original);
  const at::Tensor state = original.generator_state();
  const auto next = epoch_order(original);
  const auto after_next = epoch_order(original);

  Batcher resumed(d, 32, true, 999);  // a different seed: the state alone must decide the order
  resumed.set_generator_state(state);
  EXPECT_EQ(epoch_order(resumed), next);
  EXPECT_EQ(epoch_order(resumed), after_next);

  // The returned state is a snapshot, not a view of the live generator.
  original.set_generator_state(state);
  EXPECT_EQ(epoch_order(original), next);
}

TEST(Batcher, BatchesAreCopiesNotViews) {
  const Dataset d = synthetic(20, 1, 10, 0, 1);
  const at::Tensor before = d.inputs.clone();
  Batcher batcher(d, 5, false, 0);
  batcher.start_epoch();
  Batch b = batcher.batch(1);
  b.inputs.fill_(-7.0f);
  b.targets.fill_(3);
  EXPECT_TRUE(at::equal(d.inputs, before));
  EXPECT_FALSE(at::equal(batcher.batch(1).inputs, b.inputs));
}

}  // namespace

}  // namespace dataset_test
