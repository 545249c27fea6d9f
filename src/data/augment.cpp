#include "flatmin/data/augment.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

#include "flatmin/core/error.h"

namespace flatmin::data {

struct Augmenter::Impl {
  at::Generator generator;
};

Augmenter::Augmenter(AugmentOptions options) : options_(std::move(options)), impl_(std::make_shared<Impl>()) {
  check(options_.padding() >= 0, "augmentation padding must be >= 0, got " + std::to_string(options_.padding()));
  impl_->generator = at::make_generator<at::CPUGeneratorImpl>(options_.seed());
}

at::Tensor Augmenter::generator_state() const { return impl_->generator.get_state(); }

void Augmenter::set_generator_state(const at::Tensor& state) {
  try {
    impl_->generator.set_state(state);
  } catch (const c10::Error& e) {
    throw Error(std::string("augmentation generator state is invalid: ") + e.what_without_backtrace());
  }
}

at::Tensor Augmenter::operator()(const at::Tensor& images) {
  check(images.dim() == 4, "augmentation expects images [N, C, H, W]");
  torch::NoGradGuard no_grad;
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const int64_t p = options_.padding();
  const auto& fill = options_.fill();
  check(fill.empty() || static_cast<int64_t>(fill.size()) == c,
        "augmentation fill has " + std::to_string(fill.size()) + " values for " + std::to_string(c) + " channels");

  // Per batch: the offsets (dy, dx) of every image, then the flip bits of every image.
  const auto long_options = at::TensorOptions().dtype(at::kLong);
  const at::Tensor offsets = at::randint(0, 2 * p + 1, {n, 2}, impl_->generator, long_options);
  const at::Tensor flips = at::randint(0, 2, {n}, impl_->generator, long_options);
  const auto d = offsets.accessor<int64_t, 2>();
  const auto f = flips.accessor<int64_t, 1>();

  at::Tensor padded = at::empty({n, c, h + 2 * p, w + 2 * p}, images.options());
  if (fill.empty()) {
    padded.zero_();
  } else {
    for (int64_t ch = 0; ch < c; ++ch) padded.select(1, ch).fill_(fill[static_cast<size_t>(ch)]);
  }
  padded.narrow(2, p, h).narrow(3, p, w).copy_(images);

  at::Tensor out = at::empty_like(images, at::MemoryFormat::Contiguous);
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor crop = padded[i].narrow(1, d[i][0], h).narrow(2, d[i][1], w);
    const bool flip = options_.flip() && f[i] == 1;
    out[i].copy_(flip ? crop.flip({2}) : crop);
  }
  return out;
}

}  // namespace flatmin::data
