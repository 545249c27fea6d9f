#include "flatmin/data/sources.h"

#include <algorithm>
#include <filesystem>

#include <ATen/ATen.h>

#include "flatmin/core/error.h"
#include "internal.h"

namespace flatmin::data {
namespace {

namespace fs = std::filesystem;

std::string kinds_text() {
  std::string s;
  for (const std::string& k : dataset_kinds()) s += (s.empty() ? "" : ", ") + k;
  return s;
}

/// DIR itself, or DIR/`inner` when the distribution's own folder was unpacked inside it.
fs::path distribution_dir(const std::string& dir, const std::string& inner, const std::string& probe) {
  std::error_code ec;
  check(fs::is_directory(dir, ec), dir + ": data directory not found");
  if (!fs::exists(fs::path(dir) / probe, ec) && fs::is_directory(fs::path(dir) / inner, ec)) return fs::path(dir) / inner;
  return dir;
}

std::string existing(const fs::path& path, const std::string& what) {
  std::error_code ec;
  check(fs::is_regular_file(path, ec), path.string() + ": file not found (" + what + ")");
  return path.string();
}

TrainTest load_cifar10(const std::string& dir) {
  const fs::path root = distribution_dir(dir, "cifar-10-batches-bin", "test_batch.bin");
  std::vector<std::string> batches;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("data_batch_", 0) == 0 && entry.path().extension() == ".bin") batches.push_back(entry.path().string());
  }
  check(!batches.empty(), (root / "data_batch_1.bin").string() + ": file not found (CIFAR-10 binary version: "
                                                                 "data_batch_1.bin … data_batch_5.bin, test_batch.bin)");
  std::sort(batches.begin(), batches.end());
  TrainTest out;
  out.train = read_cifar(batches, CifarLabels::kCifar10);
  out.test = read_cifar({existing(root / "test_batch.bin", "CIFAR-10's test set")}, CifarLabels::kCifar10);
  return out;
}

TrainTest load_cifar100(const std::string& dir, const std::string& labels) {
  check(labels == "fine" || labels == "coarse", "CIFAR-100 labels must be fine or coarse, got '" + labels + "'");
  const CifarLabels which = labels == "fine" ? CifarLabels::kCifar100Fine : CifarLabels::kCifar100Coarse;
  const fs::path root = distribution_dir(dir, "cifar-100-binary", "train.bin");
  TrainTest out;
  out.train = read_cifar({existing(root / "train.bin", "CIFAR-100 binary version: train.bin, test.bin")}, which);
  out.test = read_cifar({existing(root / "test.bin", "CIFAR-100's test set")}, which);
  return out;
}

TrainTest load_tensor_files(const std::string& dir) {
  std::error_code ec;
  check(fs::is_directory(dir, ec), dir + ": data directory not found (expected train.pt and test.pt in it)");
  TrainTest out;
  for (auto [split, name] : {std::pair<Dataset*, const char*>{&out.train, "train.pt"}, {&out.test, "test.pt"}}) {
    const std::string path = existing(fs::path(dir) / name, "torch.save({\"x\": x, \"y\": y}, path) in Python");
    const std::vector<unsigned char> bytes = read_file_bytes(path);
    *split = parse_tensor_file(bytes.data(), bytes.size(), path);
  }
  check(out.train.inputs.sizes().slice(1) == out.test.inputs.sizes().slice(1),
        (fs::path(dir) / "test.pt").string() + ": x " + shape_string(out.test.inputs.sizes().slice(1)) +
            " per example, train.pt's " + shape_string(out.train.inputs.sizes().slice(1)));
  const int64_t classes = std::max(out.train.num_classes, out.test.num_classes);
  out.train.num_classes = out.test.num_classes = classes;
  return out;
}

}  // namespace

const std::vector<std::string>& dataset_kinds() {
  static const std::vector<std::string> kinds{"fashion-mnist", "idx", "cifar10", "cifar100", "folder", "tensors"};
  return kinds;
}

std::string resolved_dir(const DataSource& source) {
  return source.dir().empty() ? default_fashion_mnist_dir() : source.dir();
}

TrainTest load_dataset(const DataSource& source, Progress* progress) {
  const std::string& kind = source.kind();
  check(std::find(dataset_kinds().begin(), dataset_kinds().end(), kind) != dataset_kinds().end(),
        "unknown dataset '" + kind + "' (valid: " + kinds_text() + ")");
  if (kind == "fashion-mnist") return load_idx_pixels(resolved_dir(source), 10);
  check(!source.dir().empty(), "--dataset " + kind + " needs --data-dir");
  if (kind == "idx") return load_idx_pixels(source.dir(), 0);
  if (kind == "cifar10") return load_cifar10(source.dir());
  if (kind == "cifar100") return load_cifar100(source.dir(), source.labels());
  if (kind == "folder") return load_image_folder(source, progress);
  return load_tensor_files(source.dir());
}

}  // namespace flatmin::data
