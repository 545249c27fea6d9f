// The dataset readers against small files in their exact formats, and against damaged variants: every
// failure is one line naming the file.
#include <filesystem>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "data/dataset_files.h"
#include "flatmin/core/error.h"
#include "flatmin/data/sources.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace sources_test {

using namespace flatmin;
using namespace flatmin::testing;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("flatmin-sources-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    return message;
  }
  ADD_FAILURE() << "no flatmin::Error";
  return "";
}

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

data::TrainTest load(const std::string& kind, const fs::path& dir) {
  return data::load_dataset(data::DataSource().kind(kind).dir(dir.string()).cache_dir((dir / "cache").string()));
}

}  // namespace

TEST(Cifar, ReadsTheBinaryVersionExactly) {
  const fs::path dir = scratch("cifar10");
  auto [x, y] = synthetic_images(30, 3, 32, 32, 10, 1);
  write_bytes(dir / "data_batch_1.bin", cifar_records(x.slice(0, 0, 10), y.slice(0, 0, 10)));
  write_bytes(dir / "data_batch_2.bin", cifar_records(x.slice(0, 10, 20), y.slice(0, 10, 20)));
  write_bytes(dir / "test_batch.bin", cifar_records(x.slice(0, 20), y.slice(0, 20)));
  const data::TrainTest t = load("cifar10", dir);
  ASSERT_EQ(t.train.inputs.sizes(), (std::vector<int64_t>{20, 3, 32, 32}));
  EXPECT_EQ(t.train.num_classes, 10);
  EXPECT_TRUE(torch::equal(t.train.targets, y.slice(0, 0, 20)));
  EXPECT_TRUE(torch::equal(t.test.targets, y.slice(0, 20)));
  // Pixel (c, h, w) of record i is byte 1 + c·1024 + h·32 + w: the planes, not interleaved.
  EXPECT_TRUE(torch::allclose(t.train.inputs, x.slice(0, 0, 20).to(torch::kFloat) / 255));
  EXPECT_TRUE(torch::allclose(t.test.inputs, x.slice(0, 20).to(torch::kFloat) / 255));
  fs::remove_all(dir);
}

TEST(Cifar, HundredHasFineAndCoarseLabelsAndFindsItsOwnFolder) {
  const fs::path dir = scratch("cifar100");
  auto [x, y] = synthetic_images(20, 3, 32, 32, 100, 2);
  const at::Tensor coarse = (y * 7).remainder(20);
  write_bytes(dir / "cifar-100-binary" / "train.bin", cifar_records(x.slice(0, 0, 12), y.slice(0, 0, 12), coarse.slice(0, 0, 12)));
  write_bytes(dir / "cifar-100-binary" / "test.bin", cifar_records(x.slice(0, 12), y.slice(0, 12), coarse.slice(0, 12)));
  data::TrainTest fine = load("cifar100", dir);
  EXPECT_EQ(fine.train.num_classes, 100);
  EXPECT_TRUE(torch::equal(fine.train.targets, y.slice(0, 0, 12)));
  data::TrainTest coarse_set = data::load_dataset(data::DataSource().kind("cifar100").dir(dir.string()).labels("coarse"));
  EXPECT_EQ(coarse_set.train.num_classes, 20);
  EXPECT_TRUE(torch::equal(coarse_set.test.targets, coarse.slice(0, 12)));
  EXPECT_TRUE(torch::allclose(coarse_set.test.inputs, x.slice(0, 12).to(torch::kFloat) / 255));
  fs::remove_all(dir);
}

TEST(Cifar, DamagedFilesAreNamed) {
  const fs::path dir = scratch("cifar-bad");
  auto [x, y] = synthetic_images(4, 3, 32, 32, 10, 3);
  std::string records = cifar_records(x, y);
  write_bytes(dir / "data_batch_1.bin", records.substr(0, records.size() - 1));
  write_bytes(dir / "test_batch.bin", records);
  EXPECT_CONTAINS(error_of([&] { load("cifar10", dir); }),
                  "data_batch_1.bin: 12291 bytes is not a whole number of CIFAR-10 records of 3073 bytes");
  records[3073] = 10;  // record 1's label
  write_bytes(dir / "data_batch_1.bin", records);
  EXPECT_CONTAINS(error_of([&] { load("cifar10", dir); }), "data_batch_1.bin: record 1 has label 10, out of range");
  fs::remove(dir / "data_batch_1.bin");
  EXPECT_CONTAINS(error_of([&] { load("cifar10", dir); }), "data_batch_1.bin: file not found");
  write_bytes(dir / "data_batch_1.bin", cifar_records(x, y));
  fs::remove(dir / "test_batch.bin");
  EXPECT_CONTAINS(error_of([&] { load("cifar10", dir); }), "test_batch.bin: file not found");
  // A CIFAR-10 file read as CIFAR-100: the record size does not divide.
  write_bytes(dir / "train.bin", cifar_records(x, y));
  write_bytes(dir / "test.bin", cifar_records(x, y));
  EXPECT_CONTAINS(error_of([&] { load("cifar100", dir); }), "train.bin: 12292 bytes is not a whole number of CIFAR-100");
  EXPECT_CONTAINS(error_of([&] { load("cifar10", dir / "nowhere"); }), "nowhere: data directory not found");
  fs::remove_all(dir);
}

TEST(TensorFiles, ReadWhatPythonWrites) {
  const fs::path dir = scratch("tensors");
  auto [x, y] = synthetic_images(10, 2, 5, 5, 3, 4);
  write_bytes(dir / "train.pt", tensor_file(x, y));  // uint8: scaled to [0, 1]
  write_bytes(dir / "test.pt", tensor_file(x.to(torch::kDouble) / 255, y, 7));  // float64 and "classes"
  const data::TrainTest t = load("tensors", dir);
  EXPECT_TRUE(torch::allclose(t.train.inputs, x.to(torch::kFloat) / 255));
  EXPECT_TRUE(torch::allclose(t.test.inputs, t.train.inputs));
  EXPECT_EQ(t.train.num_classes, 7);  // the larger of the two files' class counts
  EXPECT_EQ(t.test.num_classes, 7);
  // [N, D] features: D channels of 1×1.
  write_bytes(dir / "train.pt", tensor_file(torch::rand({6, 9}), torch::tensor({0, 1, 2, 0, 1, 2}, torch::kLong)));
  write_bytes(dir / "test.pt", tensor_file(torch::rand({3, 9}), torch::tensor({0, 1, 2}, torch::kLong)));
  EXPECT_EQ(load("tensors", dir).train.inputs.sizes(), (std::vector<int64_t>{6, 9, 1, 1}));
  fs::remove_all(dir);
}

TEST(TensorFiles, ValidationNamesTheFileAndTheProblem) {
  const fs::path dir = scratch("tensors-bad");
  const at::Tensor x = torch::rand({4, 1, 3, 3});
  const at::Tensor y = torch::tensor({0, 1, 2, 1}, torch::kLong);
  write_bytes(dir / "test.pt", tensor_file(x, y));
  auto train_error = [&](const std::string& bytes) {
    write_bytes(dir / "train.pt", bytes);
    return error_of([&] { load("tensors", dir); });
  };
  EXPECT_CONTAINS(train_error(tensor_file(x, y.to(torch::kFloat))), "train.pt: y must be int64 labels");
  EXPECT_CONTAINS(train_error(tensor_file(x, y.slice(0, 0, 3))), "train.pt: x holds 4 examples, y 3 labels");
  EXPECT_CONTAINS(train_error(tensor_file(x.view({4, 3, 3}), y)), "train.pt: x must be [N, C, H, W] or [N, D], got [4, 3, 3]");
  EXPECT_CONTAINS(train_error(tensor_file(x, y - 1)), "train.pt: label -1 out of range");
  EXPECT_CONTAINS(train_error(tensor_file(x, y, 2)), "train.pt: label 2 out of range for 2 classes");
  EXPECT_CONTAINS(train_error(tensor_file(x.to(torch::kInt), y)), "train.pt: x must be float or uint8");
  EXPECT_CONTAINS(train_error(tensor_file(x / 0, y)), "train.pt: x holds NaN or infinite values");
  EXPECT_CONTAINS(train_error("junk"), "train.pt: not a torch.save file");
  const std::string good = tensor_file(x, y);
  EXPECT_CONTAINS(train_error(good.substr(0, good.size() / 2)), "train.pt: not a torch.save file");
  {
    const std::vector<char> list = torch::pickle_save(c10::IValue(std::vector<at::Tensor>{x, y}));
    EXPECT_CONTAINS(train_error(std::string(list.begin(), list.end())), "train.pt: holds a GenericList, not a dict");
  }
  write_bytes(dir / "train.pt", tensor_file(torch::rand({4, 1, 4, 4}), y));
  EXPECT_CONTAINS(error_of([&] { load("tensors", dir); }), "test.pt: x [1, 3, 3] per example, train.pt's [1, 4, 4]");
  fs::remove(dir / "train.pt");
  EXPECT_CONTAINS(error_of([&] { load("tensors", dir); }), "train.pt: file not found");
  fs::remove_all(dir);
}

TEST(ImageFolder, DecodesResizesSplitsAndCaches) {
  const fs::path dir = scratch("folder");
  const fs::path root = dir / "images", cache = dir / "cache";
  auto [x, y] = synthetic_images(20, 3, 12, 12, 2, 5);
  for (int64_t i = 0; i < 20; ++i)  // PNG: lossless, so the pixels can be compared
    write_image(root / (y[i].item<int64_t>() == 0 ? "ant" : "bee") / (std::to_string(10 + i) + ".png"), x[i]);
  // One grey image among colour ones: it becomes RGB (its value in every channel).
  write_image(root / "bee" / "99.png", x[1].select(0, 0).unsqueeze(0));
  const auto source = data::DataSource().kind("folder").dir(root.string()).cache_dir(cache.string());
  const data::TrainTest t = data::load_dataset(source);
  EXPECT_EQ(t.train.num_classes, 2);
  // Per class, every fifth file in name order is a test image: ant has 10 (2 test), bee 11 (2 test).
  EXPECT_EQ(t.train.size(), 17);
  EXPECT_EQ(t.test.size(), 4);
  ASSERT_EQ(t.train.inputs.sizes(), (std::vector<int64_t>{17, 3, 12, 12}));
  // ant's files are examples 0, 2, 4, … in name order: its first training image is example 0.
  EXPECT_TRUE(torch::allclose(t.train.inputs[0], x[0].to(torch::kFloat) / 255));
  const at::Tensor grey = t.train.inputs[16];
  EXPECT_TRUE(torch::equal(grey[0], grey[1]) && torch::equal(grey[1], grey[2]));
  ASSERT_EQ(std::distance(fs::directory_iterator(cache), fs::directory_iterator{}), 1);
  // The cache is used (same tensors) and follows the files: a changed image is decoded again.
  EXPECT_TRUE(torch::equal(data::load_dataset(source).train.inputs, t.train.inputs));
  write_image(root / "ant" / "10.png", torch::zeros({3, 12, 12}, torch::kByte));
  EXPECT_EQ(data::load_dataset(source).train.inputs[0].max().item<float>(), 0.0f);
  // Resized to one size on request.
  EXPECT_EQ(data::load_dataset(data::DataSource(source).image_size(8)).test.inputs.sizes(),
            (std::vector<int64_t>{4, 3, 8, 8}));
  fs::remove_all(dir);
}

TEST(ImageFolder, TrainAndTestFoldersAndDamagedFiles) {
  const fs::path dir = scratch("folder-bad");
  auto [x, y] = synthetic_images(8, 1, 6, 6, 2, 6);
  for (int64_t i = 0; i < 8; ++i)
    write_image(dir / (i < 6 ? "train" : "test") / (y[i].item<int64_t>() ? "b" : "a") / (std::to_string(i) + ".png"), x[i]);
  auto source = data::DataSource().kind("folder").dir(dir.string()).cache_dir("none");
  const data::TrainTest t = data::load_dataset(source);
  EXPECT_EQ(t.train.size(), 6);
  EXPECT_EQ(t.test.size(), 2);
  EXPECT_EQ(t.train.inputs.size(1), 1);  // all grey: one channel
  write_image(dir / "train" / "a" / "7.png", torch::zeros({1, 5, 6}, torch::kByte));
  EXPECT_CONTAINS(error_of([&] { data::load_dataset(source); }), "7.png: 6x5 pixels, but");
  EXPECT_CONTAINS(error_of([&] { data::load_dataset(source); }), "pass --image-size S");
  write_bytes(dir / "train" / "a" / "7.png", "\x89PNG\r\n\x1a\n garbage");
  EXPECT_CONTAINS(error_of([&] { data::load_dataset(source); }), "7.png: corrupt PNG");
  write_bytes(dir / "train" / "a" / "7.png", "GIF89a");
  EXPECT_CONTAINS(error_of([&] { data::load_dataset(source); }), "7.png: not a PNG or JPEG image");
  // A truncated JPEG (libjpeg would pad it with grey): refused.
  write_image(dir / "full.jpg", x[0]);
  {
    std::ifstream in(dir / "full.jpg", std::ios::binary);
    const std::string jpeg((std::istreambuf_iterator<char>(in)), {});
    write_bytes(dir / "train" / "a" / "7.jpg", jpeg.substr(0, jpeg.size() / 2));
  }
  fs::remove(dir / "train" / "a" / "7.png");
  EXPECT_CONTAINS(error_of([&] { data::load_dataset(source); }), "7.jpg: corrupt JPEG");
  fs::remove(dir / "train" / "a" / "7.jpg");
  write_image(dir / "train" / "a" / "7.jpg", x[0]);
  EXPECT_EQ(data::load_dataset(source).train.size(), 7);  // an intact JPEG decodes
  fs::remove(dir / "train" / "a" / "7.jpg");
  write_image(dir / "test" / "zebra" / "1.png", x[0]);
  EXPECT_CONTAINS(error_of([&] { data::load_dataset(source); }), "zebra: a test class that the training folder lacks");
  fs::remove_all(dir / "test");
  fs::remove_all(dir / "train" / "b");
  EXPECT_CONTAINS(error_of([&] { data::load_dataset(source); }), "needs a folder per class (found 1)");
  fs::remove_all(dir);
}

TEST(IdxDataset, AnyNumberOfClassesAndSizes) {
  const fs::path dir = scratch("idx");
  write_all_kinds(dir);
  const data::TrainTest t = load("idx", dir / "idx");
  EXPECT_EQ(t.train.num_classes, 3);
  EXPECT_EQ(t.train.inputs.sizes(), (std::vector<int64_t>{150, 1, 16, 16}));
  EXPECT_EQ(t.test.size(), 50);
  EXPECT_CONTAINS(error_of([&] { data::load_dataset(data::DataSource().kind("idx")); }), "--dataset idx needs --data-dir");
  EXPECT_CONTAINS(error_of([&] { data::load_dataset(data::DataSource().kind("svhn").dir("x")); }), "unknown dataset 'svhn'");
  fs::remove_all(dir);
}

TEST(AllKinds, SplitAndNormalisePerChannel) {
  const fs::path dir = scratch("all");
  write_all_kinds(dir);
  for (const std::string kind : {"cifar10", "cifar100", "folder", "tensors", "idx"}) {
    SCOPED_TRACE(kind);
    const data::TrainTest t = load(kind, dir / kind);
    const data::Splits s = data::make_splits(t, data::SplitOptions().val_size(10).train_per_class(1));
    EXPECT_EQ(s.val.size(), 10);
    const int64_t channels = t.train.inputs.size(1);
    EXPECT_EQ(s.channel_mean.numel(), channels);
    const at::Tensor mean = s.train.inputs.mean({0, 2, 3});
    EXPECT_TRUE(torch::allclose(mean, torch::zeros({channels}), 1e-4, 1e-4));
  }
  fs::remove_all(dir);
}

// Found by fuzz_tensors, each once a crash or an out-of-memory under ASan: a zip directory pointing past the end
// of the file (torch::pickle_load's reader copied beyond its buffer), a tensor whose shape exceeds its storage, a
// 4 GB string length and a 28 GB memo index in the pickle. Each must be refused in one line.
TEST(TensorFilesFuzzRegression, DamagedFilesAreFlatminErrors) {
  const fs::path dir = fs::path(FLATMIN_FUZZ_REGRESSIONS) / "tensors";
  int count = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    SCOPED_TRACE(entry.path().string());
    std::ifstream in(entry.path(), std::ios::binary);
    const std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_CONTAINS(error_of([&] { data::parse_tensor_file(bytes.data(), bytes.size(), "fuzz-regression"); }),
                    "fuzz-regression: ");
    ++count;
  }
  EXPECT_EQ(count, 4);
}

}  // namespace sources_test
#undef EXPECT_CONTAINS
