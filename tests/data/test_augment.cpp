// Augmentation: every output image is an exact shifted (and possibly mirrored) copy of its input inside
// the padded frame, the draws are seeded and cover every offset and both flips.
#include <set>
#include <tuple>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "flatmin/core/error.h"
#include "flatmin/data/augment.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace augment_test {

using namespace flatmin::data;

namespace {

// The (dy, dx, flip) that produce `out` from `image` padded by p with `fill`, or dy = −1 if none does.
std::tuple<int64_t, int64_t, bool> find_crop(const at::Tensor& image, const at::Tensor& out, int64_t p,
                                             const std::vector<double>& fill) {
  const int64_t c = image.size(0), h = image.size(1), w = image.size(2);
  at::Tensor padded = at::empty({c, h + 2 * p, w + 2 * p}, image.options());
  for (int64_t ch = 0; ch < c; ++ch) padded[ch].fill_(fill.empty() ? 0.0 : fill[ch]);
  padded.narrow(1, p, h).narrow(2, p, w).copy_(image);
  for (int64_t dy = 0; dy <= 2 * p; ++dy)
    for (int64_t dx = 0; dx <= 2 * p; ++dx)
      for (bool flip : {false, true}) {
        at::Tensor crop = padded.narrow(1, dy, h).narrow(2, dx, w);
        if (flip) crop = crop.flip({2});
        if (at::equal(crop, out)) return {dy, dx, flip};
      }
  return {-1, -1, false};
}

TEST(Augment, EveryImageIsAnExactShiftedCopyAndEveryOffsetAndFlipOccurs) {
  at::manual_seed(0);
  const int64_t p = 2;
  const at::Tensor images = at::rand({1000, 2, 6, 5}) + 0.5;  // no pixel equals the fill: crops are identifiable
  const std::vector<double> fill{-1.0, -2.0};
  Augmenter augment(AugmentOptions().enabled(true).padding(p).fill(fill).seed(1));
  const at::Tensor out = augment(images);
  ASSERT_EQ(out.sizes(), images.sizes());
  std::set<std::tuple<int64_t, int64_t, bool>> seen;
  for (int64_t i = 0; i < images.size(0); ++i) {
    const auto found = find_crop(images[i], out[i], p, fill);
    ASSERT_GE(std::get<0>(found), 0) << "image " << i << " is not a crop of its input";
    seen.insert(found);
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>((2 * p + 1) * (2 * p + 1) * 2));  // all 50 combinations in 1,000 draws
}

TEST(Augment, SameSeedSameImagesOtherSeedOthers) {
  const at::Tensor images = at::rand({32, 1, 8, 8});
  Augmenter a(AugmentOptions().enabled(true).seed(5)), b(AugmentOptions().enabled(true).seed(5)),
      c(AugmentOptions().enabled(true).seed(6));
  for (int batch = 0; batch < 3; ++batch) {  // the stream advances batch after batch, identically
    const at::Tensor xa = a(images), xb = b(images), xc = c(images);
    EXPECT_TRUE(at::equal(xa, xb)) << batch;
    EXPECT_FALSE(at::equal(xa, xc)) << batch;
  }
  EXPECT_FALSE(at::equal(a(images), a(images)));  // a fresh draw for every batch
}

TEST(Augment, NoPaddingAndNoFlipIsTheIdentityAndFlipAloneMirrors) {
  const at::Tensor images = at::rand({16, 3, 4, 4});
  Augmenter identity(AugmentOptions().enabled(true).padding(0).flip(false));
  EXPECT_TRUE(at::equal(identity(images), images));
  Augmenter flip_only(AugmentOptions().enabled(true).padding(0).flip(true).seed(2));
  const at::Tensor out = flip_only(images);
  int flipped = 0;
  for (int64_t i = 0; i < 16; ++i) {
    const bool same = at::equal(out[i], images[i]);
    EXPECT_TRUE(same || at::equal(out[i], images[i].flip({2}))) << i;
    flipped += same ? 0 : 1;
  }
  EXPECT_GT(flipped, 0);
  EXPECT_LT(flipped, 16);
}

TEST(Augment, RejectsBadOptions) {
  EXPECT_THROW(Augmenter(AugmentOptions().padding(-1)), flatmin::Error);
  Augmenter wrong_fill(AugmentOptions().fill({0.0, 0.0}));
  EXPECT_THROW(wrong_fill(at::rand({2, 3, 4, 4})), flatmin::Error);
  Augmenter plain{AugmentOptions()};
  EXPECT_THROW(plain(at::rand({4, 4})), flatmin::Error);
}

}  // namespace

}  // namespace augment_test
