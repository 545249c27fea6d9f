#pragma once
/// Image augmentation for training batches: random crop with padding and random horizontal flip
/// (the CIFAR recipe of He et al. 2016, used by the NSO and SAM papers), from a seeded generator.

#include <cstdint>
#include <memory>
#include <vector>

#include <ATen/Tensor.h>
#include <torch/arg.h>

namespace flatmin::data {

struct AugmentOptions {
  /// Off by default; the Trainer applies it to every training batch when on.
  TORCH_ARG(bool, enabled) = false;
  /// Pixels of padding on each side; the crop offset is uniform in [0, 2·padding] on each axis.
  TORCH_ARG(int64_t, padding) = 4;
  /// Flip each image left-right with probability ½.
  TORCH_ARG(bool, flip) = true;
  /// Value of the padding per channel (empty = 0). On standardised data, −mean_c/std_c pads with what a
  /// black pixel became (run_training sets it so).
  TORCH_ARG(std::vector<double>, fill) = {};
  /// Seed of the augmentation stream (run_training: derive_seed(seed, SeedStream::kAugment)).
  TORCH_ARG(uint64_t, seed) = 0;
};

/// Applies the augmentation to batches [N, C, H, W]. Image i of a batch becomes
///     out_i = flip_i( pad(x_i)[:, dy_i : dy_i + H, dx_i : dx_i + W] ),
/// pad(x) = x surrounded by `padding` pixels of `fill`, dy_i, dx_i ~ U{0 … 2·padding}, flip_i ~ Bernoulli(½)
/// (no flip when flip is off): an exact shifted (and mirrored) copy, never interpolated. The draws come
/// from one CPU generator seeded with `seed` (per batch: the N offset pairs, then the N flip bits, drawn
/// whether or not flip is on), never the global RNG, so the same seed and the same sequence of batch
/// sizes give the same images. Throws flatmin::Error on a
/// negative padding or a fill whose size is neither 0 nor C.
class Augmenter {
 public:
  explicit Augmenter(AugmentOptions options);
  at::Tensor operator()(const at::Tensor& images);
  const AugmentOptions& options() const { return options_; }
  /// The generator's state, to checkpoint and resume a run exactly.
  at::Tensor generator_state() const;
  void set_generator_state(const at::Tensor& state);

 private:
  struct Impl;
  AugmentOptions options_;
  std::shared_ptr<Impl> impl_;
};

}  // namespace flatmin::data
