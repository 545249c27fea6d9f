#pragma once
/// In-memory image-classification datasets, deterministic splits and seeded mini-batching.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <torch/arg.h>

namespace flatmin::data {

struct Dataset {
  /// float32 [N, C, H, W]; or uint8 pixels [N, C, H, W] standing for value/255: load_dataset leaves 8-bit IDX
  /// images so, and make_splits converts only the examples it keeps (float_inputs converts for other uses).
  at::Tensor inputs;
  at::Tensor targets;  ///< int64 [N], values in [0, num_classes)
  int64_t num_classes = 0;

  int64_t size() const { return targets.defined() ? targets.size(0) : 0; }
  /// The examples at `indices` (int64, any order), same num_classes.
  Dataset subset(const at::Tensor& indices) const;
};

/// `inputs` as float32: uint8 pixels scaled to [0, 1] (bitwise what load_idx_pair gives), float as they are.
at::Tensor float_inputs(const at::Tensor& inputs);

/// Reads a pair of IDX files: images [N, H, W] (or [N, C, H, W]) of uint8, scaled to [0, 1], and labels
/// [N] of uint8. Throws flatmin::Error naming the file when the counts disagree or a label is out of
/// range of `num_classes`.
Dataset load_idx_pair(const std::string& images_path, const std::string& labels_path,
                      int64_t num_classes = 10);

/// The directory holding Debian's dataset-fashion-mnist: $FLATMIN_DATA_DIR if set, else
/// /usr/share/datasets/fashion-mnist.
std::string default_fashion_mnist_dir();

struct TrainTest {
  Dataset train;
  Dataset test;
};

/// Reads {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] from `dir` (MNIST uses the same names).
/// A missing directory or file gives a flatmin::Error that says which and how to install the data.
TrainTest load_fashion_mnist(const std::string& dir);
/// The same for any IDX dataset under those names; num_classes 0 = 0 … the largest label of either split.
TrainTest load_idx_directory(const std::string& dir, int64_t num_classes = 0);

/// How to cut the train / validation / test splits. Every choice is deterministic given `seed`.
/// Order: keep `classes` (labels remapped to 0..C-1 in the order given) → validation = `val_size`
/// random training examples → training = the rest, or `train_per_class` random examples of each class
/// of the rest → test = all test examples of the kept classes, or `test_size` random ones.
/// All draws come from one CPU generator seeded with `seed` (never the global RNG); every split lists its
/// examples in the source's order. Normalisation uses the population std, floored at 1e-8.
/// Label noise (when > 0) then replaces the label of round(label_noise · N) random training examples by a
/// uniformly drawn *other* class, from a generator of its own (the examples chosen do not move).
struct SplitOptions {
  TORCH_ARG(int64_t, val_size) = 5000;
  TORCH_ARG(std::vector<int64_t>, classes) = {};  ///< empty = all classes
  TORCH_ARG(int64_t, train_per_class) = 0;        ///< 0 = all remaining examples
  TORCH_ARG(int64_t, test_size) = 0;              ///< 0 = all
  TORCH_ARG(uint64_t, seed) = 0;
  /// Standardise every split with the training split's per-channel mean and std.
  TORCH_ARG(bool, normalize) = true;
  /// Standardise with these per-channel values instead (a pretrained model's: the same pixels then mean
  /// the same thing to it); both empty = the training split's. Only with normalize.
  TORCH_ARG(std::vector<double>, mean) = {};
  TORCH_ARG(std::vector<double>, std) = {};
  /// Fraction of training labels replaced by another class at random (a noisy-label task), in [0, 1).
  /// Validation and test labels stay clean.
  TORCH_ARG(double, label_noise) = 0.0;
};

struct Splits {
  Dataset train;            ///< with label_noise, its noisy labels
  at::Tensor noisy_labels;  ///< bool [train size]: which labels label_noise replaced (undefined without)
  Dataset val;   ///< may be empty (val_size 0)
  Dataset test;
  at::Tensor channel_mean;  ///< [C], what was subtracted (zeros when not normalised)
  at::Tensor channel_std;   ///< [C], what was divided by (ones when not normalised)
};

/// Throws flatmin::Error when an option cannot be met (a class out of range or repeated, val_size larger
/// than the training set, a class with fewer than train_per_class examples left, ...).
Splits make_splits(const TrainTest& data, const SplitOptions& options);

struct Batch {
  at::Tensor inputs;
  at::Tensor targets;
};

/// Mini-batches over a dataset in a seeded random order (a fresh permutation per epoch) or in order.
/// The order depends only on the seed and the number of epochs started, so runs are reproducible and a
/// run can resume by restoring `generator_state()`.
class Batcher {
 public:
  Batcher(const Dataset& data, int64_t batch_size, bool shuffle, uint64_t seed, bool drop_last = false);

  /// Draws the order of the next epoch.
  void start_epoch();
  int64_t num_batches() const;
  /// Batch i of the current epoch (contiguous copies; the last one may be short unless drop_last).
  /// Throws flatmin::Error when i is out of [0, num_batches()) or no epoch has been started.
  Batch batch(int64_t i) const;

  at::Tensor generator_state() const;
  void set_generator_state(const at::Tensor& state);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace flatmin::data
