// Noise laws: moments against their definitions; schedules against the paper's formulas.
#include <cmath>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "flatmin/core/error.h"
#include "flatmin/noise/noise.h"

using flatmin::noise::NoiseLaw;

namespace {

constexpr int64_t kSamples = 1 << 21;

struct Moments {
  double mean, std, kurtosis, mean_abs;
};

Moments moments_of(NoiseLaw law, double sigma, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Tensor x = at::empty({kSamples}, at::kDouble);
  flatmin::noise::fill_noise_(x, law, sigma, gen);
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

TEST(Noise, RademacherIsExactlyPlusMinusSigmaAndUniformIsBounded) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  at::Tensor x = at::empty({10000});
  flatmin::noise::fill_noise_(x, NoiseLaw::kRademacher, 0.25f, gen);
  EXPECT_TRUE(((x == 0.25f) | (x == -0.25f)).all().item<bool>());
  flatmin::noise::fill_noise_(x, NoiseLaw::kUniform, 0.25, gen);
  EXPECT_LE(x.abs().max().item<double>(), std::sqrt(3.0) * 0.25 + 1e-6);
  EXPECT_GT(x.abs().max().item<double>(), 0.9 * std::sqrt(3.0) * 0.25);
}

TEST(Noise, SameSeedSameDrawsDifferentSeedDifferentDraws) {
  for (NoiseLaw law : {NoiseLaw::kGaussian, NoiseLaw::kLaplace, NoiseLaw::kUniform, NoiseLaw::kRademacher}) {
    at::Tensor a = at::empty({1000}), b = at::empty({1000}), c = at::empty({1000});
    flatmin::noise::fill_noise_(a, law, 1.0, at::make_generator<at::CPUGeneratorImpl>(5));
    flatmin::noise::fill_noise_(b, law, 1.0, at::make_generator<at::CPUGeneratorImpl>(5));
    flatmin::noise::fill_noise_(c, law, 1.0, at::make_generator<at::CPUGeneratorImpl>(6));
    EXPECT_TRUE(at::equal(a, b)) << flatmin::noise::to_string(law);
    EXPECT_FALSE(at::equal(a, c)) << flatmin::noise::to_string(law);
  }
}

TEST(Noise, ZeroSigmaGivesZerosAndBadSigmaIsRejected) {
  at::Tensor x = at::ones({100});
  flatmin::noise::fill_noise_(x, NoiseLaw::kLaplace, 0.0, c10::nullopt);
  EXPECT_TRUE(at::equal(x, at::zeros({100})));
  EXPECT_THROW(flatmin::noise::fill_noise_(x, NoiseLaw::kGaussian, -0.1, c10::nullopt), flatmin::Error);
  EXPECT_THROW(flatmin::noise::fill_noise_(x, NoiseLaw::kGaussian, NAN, c10::nullopt), flatmin::Error);
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
