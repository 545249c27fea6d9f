#include "flatmin/data/dataset.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <mutex>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "flatmin/core/error.h"
#include "flatmin/core/shape.h"
#include "flatmin/data/idx.h"
#include "internal.h"

namespace flatmin::data {
namespace {

namespace fs = std::filesystem;

constexpr const char* kInstallHint = "install Debian's dataset-fashion-mnist or pass --data-dir";
constexpr double kStdFloor = 1e-8;


at::Tensor long_tensor(const std::vector<int64_t>& values) {
  return at::tensor(values, at::TensorOptions().dtype(at::kLong));
}

/// Sorted indices keep every split in the source's order, so a split depends only on which examples it
/// holds, not on the permutation that chose them.
at::Tensor sorted(const at::Tensor& indices) { return std::get<0>(indices.sort()); }

/// Checks the invariants make_splits and Batcher rely on; `what` names the dataset in messages.
void check_dataset(const Dataset& data, const std::string& what) {
  check(data.inputs.defined() && data.targets.defined(), what + ": dataset is undefined");
  check(data.inputs.dim() == 4, what + ": inputs must be [N, C, H, W], got " + shape_string(data.inputs.sizes()));
  check(data.targets.dim() == 1 && data.inputs.size(0) == data.targets.size(0),
        what + ": " + std::to_string(data.inputs.size(0)) + " inputs but targets of shape " +
            shape_string(data.targets.sizes()));
  check(data.num_classes >= 1, what + ": num_classes must be >= 1, got " + std::to_string(data.num_classes));
  check(at::isFloatingType(data.inputs.scalar_type()) || data.inputs.scalar_type() == at::kByte,
        what + ": inputs must be floating point or uint8 pixels");
  check(data.targets.scalar_type() == at::kLong, what + ": targets must be int64");
  if (data.targets.numel() > 0) {
    const int64_t lo = data.targets.min().item<int64_t>();
    const int64_t hi = data.targets.max().item<int64_t>();
    check(lo >= 0 && hi < data.num_classes, what + ": target " + std::to_string(lo < 0 ? lo : hi) +
                                                " out of range for " + std::to_string(data.num_classes) +
                                                " classes");
  }
}

/// The file `dir`/`name` or `dir`/`name`.gz, whichever exists.
std::string find_data_file(const fs::path& dir, const std::string& name) {
  for (const fs::path& candidate : {dir / name, dir / (name + ".gz")}) {
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec)) return candidate.string();
  }
  throw Error((dir / name).string() + "[.gz]: file not found; " + kInstallHint);
}

}  // namespace

Dataset Dataset::subset(const at::Tensor& indices) const {
  check(indices.defined() && indices.dim() == 1, "Dataset::subset: indices must be a 1-D tensor");
  check(at::isIntegralType(indices.scalar_type(), /*includeBool=*/false),
        "Dataset::subset: indices must be integers");
  const at::Tensor idx = indices.to(at::kLong);
  if (idx.numel() > 0) {
    const int64_t lo = idx.min().item<int64_t>();
    const int64_t hi = idx.max().item<int64_t>();
    check(lo >= 0 && hi < size(), "Dataset::subset: index " + std::to_string(lo < 0 ? lo : hi) +
                                      " out of range [0, " + std::to_string(size()) + ")");
  }
  Dataset out;
  out.num_classes = num_classes;
  if (inputs.defined()) out.inputs = inputs.index_select(0, idx);
  if (targets.defined()) out.targets = targets.index_select(0, idx);
  return out;
}

at::Tensor float_inputs(const at::Tensor& inputs) {
  if (!inputs.defined() || inputs.scalar_type() != at::kByte) return inputs;
  return inputs.to(at::kFloat).div_(255.0f);
}

namespace {

/// load_idx_pair with the images left as uint8 [N, C, H, W].
Dataset load_idx_pair_pixels(const std::string& images_path, const std::string& labels_path, int64_t num_classes) {
  check(num_classes >= 1, labels_path + ": num_classes must be >= 1, got " + std::to_string(num_classes));
  at::Tensor images = read_idx(images_path);
  check(images.scalar_type() == at::kByte,
        images_path + ": images must be uint8, found " + std::string(c10::toString(images.scalar_type())));
  check(images.dim() == 3 || images.dim() == 4,
        images_path + ": images must be [N, H, W] or [N, C, H, W], found " + shape_string(images.sizes()));
  at::Tensor labels = read_idx(labels_path);
  check(labels.scalar_type() == at::kByte,
        labels_path + ": labels must be uint8, found " + std::string(c10::toString(labels.scalar_type())));
  check(labels.dim() == 1, labels_path + ": labels must be [N], found " + shape_string(labels.sizes()));
  check(labels.size(0) == images.size(0), labels_path + ": label count mismatch: " +
                                              std::to_string(labels.size(0)) + " labels but " + images_path +
                                              " holds " + std::to_string(images.size(0)) + " images");
  // Compared as int64: against a uint8 tensor, num_classes = 256 would wrap to 0.
  at::Tensor targets = labels.to(at::kLong);
  const at::Tensor bad = targets.ge(num_classes).nonzero();
  if (bad.size(0) > 0) {
    const int64_t i = bad[0][0].item<int64_t>();
    throw Error(labels_path + ": label " + std::to_string(targets[i].item<int64_t>()) + " at index " +
                std::to_string(i) + " out of range for " + std::to_string(num_classes) + " classes");
  }

  Dataset out;
  if (images.dim() == 3) images = images.unsqueeze(1);
  out.inputs = std::move(images);
  out.targets = std::move(targets);
  out.num_classes = num_classes;
  return out;
}

}  // namespace

Dataset load_idx_pair(const std::string& images_path, const std::string& labels_path, int64_t num_classes) {
  Dataset out = load_idx_pair_pixels(images_path, labels_path, num_classes);
  out.inputs = float_inputs(out.inputs);
  return out;
}

std::string default_fashion_mnist_dir() {
  const char* env = std::getenv("FLATMIN_DATA_DIR");
  if (env != nullptr && env[0] != '\0') return env;
  return "/usr/share/datasets/fashion-mnist";
}

TrainTest load_fashion_mnist(const std::string& dir) { return load_idx_directory(dir, 10); }

TrainTest load_idx_directory(const std::string& dir, int64_t num_classes) {
  TrainTest out = load_idx_pixels(dir, num_classes);
  for (Dataset* d : {&out.train, &out.test}) d->inputs = float_inputs(d->inputs);
  return out;
}

TrainTest load_idx_pixels(const std::string& dir, int64_t num_classes) {
  std::error_code ec;
  check(fs::is_directory(dir, ec), dir + ": data directory not found; " + kInstallHint);
  // Unknown classes: read with the widest range, then 0 … the largest label of either split.
  const int64_t read_classes = num_classes > 0 ? num_classes : 256;
  TrainTest out;
  out.train = load_idx_pair_pixels(find_data_file(dir, "train-images-idx3-ubyte"),
                            find_data_file(dir, "train-labels-idx1-ubyte"), read_classes);
  const std::string test_images = find_data_file(dir, "t10k-images-idx3-ubyte");
  out.test = load_idx_pair_pixels(test_images, find_data_file(dir, "t10k-labels-idx1-ubyte"), read_classes);
  check(out.train.inputs.sizes().slice(1) == out.test.inputs.sizes().slice(1),
        test_images + ": image shape " + shape_string(out.test.inputs.sizes().slice(1)) +
            " differs from the training images' " + shape_string(out.train.inputs.sizes().slice(1)));
  if (num_classes <= 0) {
    check(out.train.size() > 0, dir + ": no training examples");
    const int64_t classes = std::max(out.train.targets.max().item<int64_t>(),
                                     out.test.size() > 0 ? out.test.targets.max().item<int64_t>() : 0) + 1;
    out.train.num_classes = out.test.num_classes = classes;
  }
  return out;
}

Splits make_splits(const TrainTest& data, const SplitOptions& options) {
  check_dataset(data.train, "make_splits: training set");
  check_dataset(data.test, "make_splits: test set");
  const int64_t num_classes = data.train.num_classes;
  check(data.test.num_classes == num_classes, "make_splits: the training set has " + std::to_string(num_classes) +
                                                  " classes, the test set " +
                                                  std::to_string(data.test.num_classes));
  check(data.train.inputs.sizes().slice(1) == data.test.inputs.sizes().slice(1),
        "make_splits: training images " + shape_string(data.train.inputs.sizes().slice(1)) +
            " and test images " + shape_string(data.test.inputs.sizes().slice(1)) + " differ in shape");
  check(options.val_size() >= 0, "val_size: must be >= 0, got " + std::to_string(options.val_size()));
  check(options.train_per_class() >= 0,
        "train_per_class: must be >= 0, got " + std::to_string(options.train_per_class()));
  check(options.test_size() >= 0, "test_size: must be >= 0, got " + std::to_string(options.test_size()));
  check(options.label_noise() >= 0 && options.label_noise() < 1,
        "label_noise: must be in [0, 1), got " + std::to_string(options.label_noise()));
  check(options.mean().size() == options.std().size(), "normalisation: mean and std must have as many channels");
  for (double s : options.std()) check(std::isfinite(s) && s > 0, "normalisation: std must be finite and > 0");
  for (double m : options.mean()) check(std::isfinite(m), "normalisation: mean must be finite");

  // 1. Keep the chosen classes, relabelled 0..C-1 in the order given.
  Dataset train = data.train;
  Dataset test = data.test;
  int64_t kept_classes = num_classes;
  if (!options.classes().empty()) {
    std::vector<int64_t> remap(num_classes, -1);
    for (size_t k = 0; k < options.classes().size(); ++k) {
      const int64_t c = options.classes()[k];
      check(c >= 0 && c < num_classes, "classes: class " + std::to_string(c) + " out of range [0, " +
                                           std::to_string(num_classes) + ")");
      check(remap[c] < 0, "classes: class " + std::to_string(c) + " repeated");
      remap[c] = static_cast<int64_t>(k);
    }
    kept_classes = static_cast<int64_t>(options.classes().size());
    const at::Tensor table = long_tensor(remap);
    auto keep = [&](const Dataset& d) {
      const at::Tensor new_labels = table.index_select(0, d.targets);
      Dataset kept = d.subset(new_labels.ge(0).nonzero().squeeze(1));
      kept.targets = table.index_select(0, kept.targets);
      kept.num_classes = kept_classes;
      return kept;
    };
    train = keep(train);
    test = keep(test);
  }

  // A dedicated generator: the global RNG's consumption elsewhere never moves the splits.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.seed());
  const auto long_opts = at::TensorOptions().dtype(at::kLong);

  // 2. Validation: val_size random training examples.
  const int64_t n_train = train.size();
  check(options.val_size() <= n_train, "val_size: " + std::to_string(options.val_size()) + " exceeds the " +
                                           std::to_string(n_train) + " training examples of the kept classes");
  const at::Tensor perm = at::randperm(n_train, gen, long_opts);
  const at::Tensor val_idx = perm.slice(0, 0, options.val_size());
  at::Tensor rest = perm.slice(0, options.val_size());

  // 3. Training: the rest, or its first train_per_class examples of each class in the random order.
  if (options.train_per_class() > 0) {
    const at::Tensor rest_labels = train.targets.index_select(0, rest);
    std::vector<at::Tensor> picks;
    for (int64_t c = 0; c < kept_classes; ++c) {
      const at::Tensor of_class = rest.index_select(0, rest_labels.eq(c).nonzero().squeeze(1));
      const std::string original =
          options.classes().empty() ? "" : " (label " + std::to_string(options.classes()[c]) + ")";
      check(of_class.size(0) >= options.train_per_class(),
            "train_per_class: class " + std::to_string(c) + original + " has only " +
                std::to_string(of_class.size(0)) + " training examples left after validation, fewer than " +
                std::to_string(options.train_per_class()));
      picks.push_back(of_class.slice(0, 0, options.train_per_class()));
    }
    rest = at::cat(picks);
  }
  check(rest.size(0) > 0, "val_size: " + std::to_string(options.val_size()) + " leaves no training examples");

  Splits splits;
  splits.train = train.subset(sorted(rest));
  splits.val = train.subset(sorted(val_idx));

  // 4. Test: all of the kept classes' test examples, or test_size random ones.
  if (options.test_size() > 0) {
    check(options.test_size() <= test.size(), "test_size: " + std::to_string(options.test_size()) +
                                                  " exceeds the " + std::to_string(test.size()) +
                                                  " test examples of the kept classes");
    splits.test = test.subset(sorted(at::randperm(test.size(), gen, long_opts).slice(0, 0, options.test_size())));
  } else {
    splits.test = test;
  }

  // 5. Label noise: its own generator, so the examples chosen above are those of the clean task.
  if (options.label_noise() > 0 && kept_classes > 1) {
    at::Generator noise_gen = at::make_generator<at::CPUGeneratorImpl>(options.seed() ^ 0x6e6f697379ULL);
    const int64_t n = splits.train.size();
    const auto flips = static_cast<int64_t>(std::llround(options.label_noise() * static_cast<double>(n)));
    const at::Tensor which = at::randperm(n, noise_gen, long_opts).slice(0, 0, flips);
    // An offset in [1, C) modulo C: uniform over the other classes, never the true one.
    const at::Tensor offset = at::randint(1, kept_classes, {flips}, noise_gen, long_opts);
    splits.train.targets = splits.train.targets.clone();
    splits.train.targets.index_put_({which}, splits.train.targets.index_select(0, which).add(offset).remainder(kept_classes));
    splits.noisy_labels = at::zeros({n}, at::TensorOptions().dtype(at::kBool));
    splits.noisy_labels.index_fill_(0, which, true);
  }

  // uint8 pixels (load_dataset's IDX images) become floats only now, for the examples kept: the same bits
  // as converting all of them first, since the conversion is per element.
  for (Dataset* d : {&splits.train, &splits.val, &splits.test}) d->inputs = float_inputs(d->inputs);

  // 6. Standardise with the training split's statistics (population std, floored so that a constant
  // channel gives zeros rather than NaN), or with the given ones.
  const int64_t channels = splits.train.inputs.size(1);
  const auto float_opts = splits.train.inputs.options();
  if (options.normalize() && !options.mean().empty()) {
    check(static_cast<int64_t>(options.mean().size()) == channels,
          "normalisation: " + std::to_string(options.mean().size()) + " channels given, the data has " +
              std::to_string(channels));
    splits.channel_mean = at::tensor(options.mean(), at::TensorOptions().dtype(at::kDouble)).to(float_opts.dtype());
    splits.channel_std = at::tensor(options.std(), at::TensorOptions().dtype(at::kDouble)).to(float_opts.dtype());
  } else if (options.normalize()) {
    auto [var, mean] = at::var_mean(splits.train.inputs, {0, 2, 3}, /*unbiased=*/false, /*keepdim=*/false);
    splits.channel_mean = mean;
    splits.channel_std = var.sqrt().clamp_min(kStdFloor);
  }
  if (options.normalize()) {
    const at::Tensor m = splits.channel_mean.view({1, channels, 1, 1});
    const at::Tensor s = splits.channel_std.view({1, channels, 1, 1});
    // Out of place: an unfiltered test split still shares its tensor with the caller's data.
    for (Dataset* d : {&splits.train, &splits.val, &splits.test}) d->inputs = at::sub(d->inputs, m).div_(s);
  } else {
    splits.channel_mean = at::zeros({channels}, float_opts);
    splits.channel_std = at::ones({channels}, float_opts);
  }
  return splits;
}

struct Batcher::Impl {
  Dataset data;
  int64_t batch_size = 1;
  bool shuffle = false;
  bool drop_last = false;
  at::Generator generator;
  at::Tensor order;  ///< this epoch's example order; undefined until start_epoch
};

Batcher::Batcher(const Dataset& data, int64_t batch_size, bool shuffle, uint64_t seed, bool drop_last)
    : impl_(std::make_shared<Impl>()) {
  check(batch_size >= 1, "batch size must be >= 1, got " + std::to_string(batch_size));
  check(data.inputs.defined() && data.targets.defined() && data.inputs.dim() >= 1 && data.targets.dim() == 1 &&
            data.inputs.size(0) == data.targets.size(0),
        "Batcher: inputs and targets must be defined and hold the same number of examples");
  // Contiguous once here, so every batch is a plain row gather.
  impl_->data = data;
  impl_->data.inputs = data.inputs.contiguous();
  impl_->data.targets = data.targets.contiguous();
  impl_->batch_size = batch_size;
  impl_->shuffle = shuffle;
  impl_->drop_last = drop_last;
  impl_->generator = at::make_generator<at::CPUGeneratorImpl>(seed);
}

void Batcher::start_epoch() {
  const int64_t n = impl_->data.size();
  const auto long_opts = at::TensorOptions().dtype(at::kLong);
  impl_->order = impl_->shuffle ? at::randperm(n, impl_->generator, long_opts) : at::arange(n, long_opts);
}

int64_t Batcher::num_batches() const {
  const int64_t n = impl_->data.size();
  return impl_->drop_last ? n / impl_->batch_size : (n + impl_->batch_size - 1) / impl_->batch_size;
}

Batch Batcher::batch(int64_t i) const {
  check(impl_->order.defined(), "Batcher::batch: start_epoch() has not been called");
  const int64_t count = num_batches();
  check(i >= 0 && i < count,
        "Batcher::batch: index " + std::to_string(i) + " out of range [0, " + std::to_string(count) + ")");
  const int64_t begin = i * impl_->batch_size;
  const int64_t end = std::min(begin + impl_->batch_size, impl_->data.size());
  const at::Tensor idx = impl_->order.slice(0, begin, end);
  return {impl_->data.inputs.index_select(0, idx), impl_->data.targets.index_select(0, idx)};
}

at::Tensor Batcher::generator_state() const {
  std::lock_guard<std::mutex> lock(impl_->generator.mutex());
  return impl_->generator.get_state();
}

void Batcher::set_generator_state(const at::Tensor& state) {
  check(state.defined() && state.scalar_type() == at::kByte && state.dim() == 1,
        "Batcher: generator state must be a 1-D uint8 tensor (from generator_state())");
  std::lock_guard<std::mutex> lock(impl_->generator.mutex());
  try {
    impl_->generator.set_state(state.cpu().contiguous());
  } catch (const c10::Error& e) {
    std::string why = e.what_without_backtrace();
    why = why.substr(0, why.find('\n'));  // flatmin messages are one line
    throw Error("Batcher: invalid generator state (" + why + ")");
  }
}

}  // namespace flatmin::data
