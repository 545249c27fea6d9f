// Noise laws: moments against their definitions; schedules against the paper's formulas.
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "flatmin/core/error.h"
#include "flatmin/noise/noise.h"

using flatmin::noise::NoiseLaw;

namespace {

constexpr int64_t kSamples = 1 << 21;

struct Moments {
  double mean, std, kurtosis, mean_abs;
};

Moments moments_of(NoiseLaw law, double sigma, uint64_t key) {
  at::Tensor x = at::empty({kSamples}, at::kDouble);
  flatmin::noise::fill_noise_(x, law, sigma, key);
  const double mean = x.mean().item<double>();
  const at::Tensor c = x - mean;
  const double var = c.pow(2).mean().item<double>();
  return {mean, std::sqrt(var), c.pow(4).mean().item<double>() / (var * var), x.abs().mean().item<double>()};
}

struct LawCase {
  NoiseLaw law;
  double kurtosis;        // of the law: Gaussian 3, Laplace 6, uniform 1.8, Rademacher 1
  double mean_abs_ratio;  // E|x| / σ: √(2/π), 1/√2, √3/2, 1
};

class NoiseLawTest : public ::testing::TestWithParam<LawCase> {};

TEST_P(NoiseLawTest, MeanZeroStdSigmaAndTheLawsShape) {
  const LawCase c = GetParam();
  const double sigma = 0.37;
  const Moments m = moments_of(c.law, sigma, 1234);
  const double n = static_cast<double>(kSamples);
  // Five standard errors: the mean's is σ/√n, the sample std's is σ·√((κ−1)/(4n)).
  EXPECT_NEAR(m.mean, 0.0, 5 * sigma / std::sqrt(n));
  // (Rademacher has κ = 1: its std deviates only through the squared sample mean, ~σ/n.)
  EXPECT_NEAR(m.std, sigma, 5 * sigma * std::sqrt((c.kurtosis - 1) / (4 * n)) + 25 * sigma / n);
  EXPECT_NEAR(m.kurtosis, c.kurtosis, 0.05 * c.kurtosis);
  EXPECT_NEAR(m.mean_abs / sigma, c.mean_abs_ratio, 0.005);
}

INSTANTIATE_TEST_SUITE_P(AllLaws, NoiseLawTest,
                         ::testing::Values(LawCase{NoiseLaw::kGaussian, 3.0, std::sqrt(2.0 / M_PI)},
                                           LawCase{NoiseLaw::kLaplace, 6.0, 1.0 / std::sqrt(2.0)},
                                           LawCase{NoiseLaw::kUniform, 1.8, std::sqrt(3.0) / 2.0},
                                           LawCase{NoiseLaw::kRademacher, 1.0, 1.0}));

const NoiseLaw kLaws[] = {NoiseLaw::kGaussian, NoiseLaw::kLaplace, NoiseLaw::kUniform, NoiseLaw::kRademacher};

// The NSO authors' "binomial", under its own name: σ·Binomial(4, ½) — integer multiples of σ with the
// binomial frequencies 1:4:6:4:1/16, mean 2σ (not zero), std σ.
TEST(Noise, Binomial4IsTheAuthorsUncenteredLaw) {
  const double sigma = 0.25;
  at::Tensor x = at::empty({1 << 20}, at::kDouble);
  flatmin::noise::fill_noise_(x, NoiseLaw::kBinomial4, sigma, 11);
  const double n = static_cast<double>(x.numel());
  for (int k = 0; k <= 4; ++k) {
    const double expected = (k == 0 || k == 4 ? 1 : k == 2 ? 6 : 4) / 16.0;
    const double freq = (x == k * sigma).sum().item<double>() / n;
    EXPECT_NEAR(freq, expected, 5 * std::sqrt(expected * (1 - expected) / n)) << k;
  }
  EXPECT_NEAR(x.mean().item<double>(), 2 * sigma, 5 * sigma / std::sqrt(n));
  EXPECT_NEAR(x.std().item<double>(), sigma, 0.002);
  EXPECT_EQ(flatmin::noise::parse_noise_law("binomial4"), NoiseLaw::kBinomial4);
  EXPECT_EQ(flatmin::noise::to_string(NoiseLaw::kBinomial4), "binomial4");
}

TEST(Noise, RademacherIsExactlyPlusMinusSigmaAndUniformIsBounded) {
  at::Tensor x = at::empty({10000});
  flatmin::noise::fill_noise_(x, NoiseLaw::kRademacher, 0.25, 7);
  EXPECT_TRUE(((x == 0.25f) | (x == -0.25f)).all().item<bool>());
  flatmin::noise::fill_noise_(x, NoiseLaw::kUniform, 0.25, 7);
  EXPECT_LE(x.abs().max().item<double>(), std::sqrt(3.0) * 0.25 + 1e-6);
  EXPECT_GT(x.abs().max().item<double>(), 0.99 * std::sqrt(3.0) * 0.25);
}

TEST(Noise, GaussianPassesKolmogorovSmirnov) {
  at::Tensor x = at::empty({1 << 20}, at::kDouble);
  flatmin::noise::fill_noise_(x, NoiseLaw::kGaussian, 1.0, 99);
  const at::Tensor sorted = std::get<0>(x.sort());
  const at::Tensor cdf = 0.5 * (1 + at::erf(sorted / std::sqrt(2.0)));
  const double n = static_cast<double>(x.numel());
  const at::Tensor i = at::arange(x.numel(), at::kDouble);
  const double d = std::max((i + 1 - cdf * n).max().item<double>(), (cdf * n - i).max().item<double>()) / n;
  EXPECT_LT(d, 1.63 / std::sqrt(n));  // rejects at the 1% level
}

TEST(Noise, SameKeySameBitsOtherKeysIndependent) {
  for (NoiseLaw law : kLaws) {
    at::Tensor a = at::empty({100001}), b = at::empty({100001});
    flatmin::noise::fill_noise_(a, law, 1.0, 5);
    flatmin::noise::fill_noise_(b, law, 1.0, 5);
    EXPECT_TRUE(at::equal(a, b)) << flatmin::noise::to_string(law);
    // Keys that differ in one argument of noise_key: uncorrelated draws (5 standard errors).
    const uint64_t base_key = flatmin::noise::noise_key(1, 2, 3, 4);
    for (uint64_t other : {flatmin::noise::noise_key(2, 2, 3, 4), flatmin::noise::noise_key(1, 3, 3, 4),
                           flatmin::noise::noise_key(1, 2, 4, 4), flatmin::noise::noise_key(1, 2, 3, 5)}) {
      ASSERT_NE(other, base_key);
      flatmin::noise::fill_noise_(a, law, 1.0, base_key);
      flatmin::noise::fill_noise_(b, law, 1.0, other);
      const double corr = ((a - a.mean()) * (b - b.mean())).mean().item<double>() /
                          (a.std(false) * b.std(false)).item<double>();
      EXPECT_LT(std::abs(corr), 5.0 / std::sqrt(100001.0)) << flatmin::noise::to_string(law);
    }
  }
}

TEST(Noise, NeighbouringElementsAndQuartersAreUncorrelated) {
  // A Philox block feeds elements b, b+Q, b+2Q, b+3Q (Box-Muller pairs among them): check those and
  // adjacent elements for correlation.
  const int64_t n = 1 << 20, q = n / 4;
  at::Tensor x = at::empty({n}, at::kDouble);
  flatmin::noise::fill_noise_(x, NoiseLaw::kGaussian, 1.0, 3);
  auto corr = [](const at::Tensor& a, const at::Tensor& b) {
    return ((a - a.mean()) * (b - b.mean())).mean().item<double>() / (a.std(false) * b.std(false)).item<double>();
  };
  const double tolerance = 5.0 / std::sqrt(static_cast<double>(q));
  EXPECT_LT(std::abs(corr(x.narrow(0, 0, q), x.narrow(0, q, q))), tolerance);          // a Box-Muller pair
  EXPECT_LT(std::abs(corr(x.narrow(0, 0, q), x.narrow(0, 2 * q, q))), tolerance);      // same block, other pair
  EXPECT_LT(std::abs(corr(x.narrow(0, 0, n - 1), x.narrow(0, 1, n - 1))), tolerance);  // neighbours
  // The squares of a Box-Muller pair are independent too (a bad angle would couple them).
  EXPECT_LT(std::abs(corr(x.narrow(0, 0, q).pow(2), x.narrow(0, q, q).pow(2))), tolerance);
}

TEST(Noise, DrawsDoNotDependOnThreadCountLayoutOrDtype) {
  const int64_t n = 300007;  // several parallel tasks, and a short last quarter
  for (NoiseLaw law : kLaws) {
    at::set_num_threads(1);
    at::Tensor one = at::empty({n});
    flatmin::noise::fill_noise_(one, law, 0.5, 11);
    at::set_num_threads(2);
    at::Tensor two = at::empty({n});
    flatmin::noise::fill_noise_(two, law, 0.5, 11);
    at::set_num_threads(1);
    EXPECT_TRUE(at::equal(one, two)) << flatmin::noise::to_string(law);

    // A non-contiguous view gets the values of the contiguous tensor of its shape, in row-major order.
    at::Tensor contiguous = at::empty({301, 997});
    flatmin::noise::fill_noise_(contiguous, law, 0.5, 12);
    at::Tensor storage = at::empty({997, 301});
    at::Tensor view = storage.t();
    flatmin::noise::fill_noise_(view, law, 0.5, 12);
    EXPECT_TRUE(at::equal(view, contiguous)) << flatmin::noise::to_string(law);

    // float64 draws the same values (made in float) as float32.
    at::Tensor d = at::empty({n}, at::kDouble);
    flatmin::noise::fill_noise_(d, law, 1.0, 13);
    at::Tensor f = at::empty({n});
    flatmin::noise::fill_noise_(f, law, 1.0, 13);
    EXPECT_TRUE(at::equal(d.to(at::kFloat), f)) << flatmin::noise::to_string(law);
  }
}

TEST(Noise, AddNoiseEqualsBasePlusTheSameDraw) {
  for (NoiseLaw law : kLaws) {
    const at::Tensor base = at::randn({1001});
    at::Tensor noise = at::empty({1001}), sum = at::empty({1001});
    flatmin::noise::fill_noise_(noise, law, 0.3, 21);
    flatmin::noise::add_noise_(sum, base, law, 0.3, 21);
    EXPECT_TRUE(at::equal(sum, base + noise)) << flatmin::noise::to_string(law);
    at::Tensor in_place = base.clone();
    flatmin::noise::add_noise_(in_place, in_place, law, 0.3, 21);
    EXPECT_TRUE(at::equal(in_place, sum));
  }
}

TEST(Noise, ZeroSigmaGivesZerosAndBadSigmaIsRejected) {
  at::Tensor x = at::ones({100});
  flatmin::noise::fill_noise_(x, NoiseLaw::kLaplace, 0.0, 1);
  EXPECT_TRUE(at::equal(x, at::zeros({100})));
  EXPECT_THROW(flatmin::noise::fill_noise_(x, NoiseLaw::kGaussian, -0.1, 1), flatmin::Error);
  EXPECT_THROW(flatmin::noise::fill_noise_(x, NoiseLaw::kGaussian, NAN, 1), flatmin::Error);
  at::Tensor wrong = at::ones({99});
  EXPECT_THROW(flatmin::noise::add_noise_(x, wrong, NoiseLaw::kGaussian, 0.1, 1), flatmin::Error);
}

TEST(Noise, ParsesNamesAndRejectsUnknownOnes) {
  EXPECT_EQ(flatmin::noise::parse_noise_law("binomial"), NoiseLaw::kRademacher);
  for (NoiseLaw law : {NoiseLaw::kGaussian, NoiseLaw::kLaplace, NoiseLaw::kUniform, NoiseLaw::kRademacher})
    EXPECT_EQ(flatmin::noise::parse_noise_law(flatmin::noise::to_string(law)), law);
  try {
    flatmin::noise::parse_noise_law("cauchy");
    FAIL() << "no error";
  } catch (const flatmin::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cauchy"), std::string::npos);
  }
}

TEST(SigmaSchedule, ConstantLinearAndExponentialFollowThePaper) {
  using flatmin::noise::ScheduleKind;
  using flatmin::noise::SigmaSchedule;
  const SigmaSchedule constant(0.01);
  for (int e = 0; e < 5; ++e) EXPECT_DOUBLE_EQ(constant.at(e, 5), 0.01);

  // Linear over the whole run of 5 epochs: σ·e/4.
  const SigmaSchedule linear = SigmaSchedule(0.01).kind(ScheduleKind::kLinear);
  for (int e = 0; e < 5; ++e) EXPECT_NEAR(linear.at(e, 5), 0.01 * e / 4.0, 1e-15);
  EXPECT_DOUBLE_EQ(linear.at(9, 5), 0.01);

  // Exponential: exp(linspace(log 1e-5, log σ, 5)), a geometric sequence from 1e-5 to σ.
  const SigmaSchedule exp_schedule = SigmaSchedule(0.01).kind(ScheduleKind::kExponential);
  EXPECT_NEAR(exp_schedule.at(0, 5), 1e-5, 1e-15);
  EXPECT_NEAR(exp_schedule.at(4, 5), 0.01, 1e-12);
  const double ratio = std::pow(0.01 / 1e-5, 0.25);
  for (int e = 1; e < 5; ++e) EXPECT_NEAR(exp_schedule.at(e, 5) / exp_schedule.at(e - 1, 5), ratio, 1e-9);

  // A warm-up shorter than the run: linear to σ over 3 epochs, then constant.
  const SigmaSchedule short_warmup = SigmaSchedule(0.02).kind(ScheduleKind::kLinear).warmup_epochs(3);
  EXPECT_DOUBLE_EQ(short_warmup.at(0, 10), 0.0);
  EXPECT_DOUBLE_EQ(short_warmup.at(1, 10), 0.01);
  EXPECT_DOUBLE_EQ(short_warmup.at(2, 10), 0.02);
  EXPECT_DOUBLE_EQ(short_warmup.at(7, 10), 0.02);

  EXPECT_THROW(SigmaSchedule(-1.0).validate(), flatmin::Error);
  EXPECT_THROW(flatmin::noise::parse_schedule_kind("cosine"), flatmin::Error);
}

}  // namespace

// The draws are part of flatmin's results (a resumed run, another machine, the GPU kernel that shares the
// per-element code): their bits are pinned. A changed constant, rounding or element order changes the hash.
TEST(Noise, DrawsKeepTheirRecordedBits) {
  const std::vector<std::pair<NoiseLaw, int64_t>> recorded = {
      {NoiseLaw::kGaussian, -156165105818261540},
      {NoiseLaw::kLaplace, -180312830645781986},
      {NoiseLaw::kUniform, -158841109668175378},
      {NoiseLaw::kRademacher, -122707429606555648}};
  for (const auto& [law, expected] : recorded) {
    at::Tensor x = at::empty({100003});
    flatmin::noise::fill_noise_(x, law, 0.25, flatmin::noise::noise_key(7, 3, 1, 2));
    const at::Tensor bits = x.view(at::kInt).to(at::kLong);
    // A position-weighted sum of the bit patterns: any changed element or order moves it.
    const int64_t hash = (bits * at::arange(1, bits.numel() + 1, at::kLong)).sum().item<int64_t>();
    EXPECT_EQ(hash, expected) << flatmin::noise::to_string(law);
  }
}
