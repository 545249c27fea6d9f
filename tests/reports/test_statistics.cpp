// The paired statistics of flatmin report against closed forms and hand computations: the incomplete beta
// function, Student's t p-values (df 1, 2 and 3 have closed forms; table values for 4 and 10), the exact
// sign test, and a paired sample worked out by hand.
#include <cmath>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "flatmin/reports/statistics.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace statistics_test {

using namespace flatmin::reports;

namespace {
constexpr double kPi = 3.14159265358979323846;
}

TEST(PairedStatistics, IncompleteBetaMatchesClosedForms) {
  for (double x : {0.0, 0.1, 0.37, 0.5, 0.9, 1.0}) {
    EXPECT_NEAR(regularized_incomplete_beta(x, 1, 1), x, 1e-13);                        // uniform
    EXPECT_NEAR(regularized_incomplete_beta(x, 3, 1), std::pow(x, 3), 1e-13);           // x^a
    EXPECT_NEAR(regularized_incomplete_beta(x, 1, 4), 1 - std::pow(1 - x, 4), 1e-13);  // 1 − (1−x)^b
  }
  EXPECT_NEAR(regularized_incomplete_beta(0.5, 7.5, 7.5), 0.5, 1e-13);  // symmetry
  EXPECT_TRUE(std::isnan(regularized_incomplete_beta(1.5, 1, 1)));
  EXPECT_TRUE(std::isnan(regularized_incomplete_beta(0.5, 0, 1)));
}

TEST(PairedStatistics, StudentTTwoSidedPValues) {
  for (double t : {0.0, 0.3, 1.0, 2.5, -4.0, 30.0}) {
    // df 1 (Cauchy): 1 − 2·atan|t|/π; df 2: 1 − |t|/√(2 + t²); df 3: 1 − (2/π)(atan(u) + u/(1 + u²)), u = |t|/√3.
    EXPECT_NEAR(student_t_two_sided_p(t, 1), 1 - 2 * std::atan(std::fabs(t)) / kPi, 1e-12) << t;
    EXPECT_NEAR(student_t_two_sided_p(t, 2), 1 - std::fabs(t) / std::sqrt(2 + t * t), 1e-12) << t;
    const double u = std::fabs(t) / std::sqrt(3.0);
    EXPECT_NEAR(student_t_two_sided_p(t, 3), 1 - 2 / kPi * (std::atan(u) + u / (1 + u * u)), 1e-12) << t;
  }
  EXPECT_NEAR(student_t_two_sided_p(2.776445105, 4), 0.05, 1e-8);   // the tables' 97.5% quantiles
  EXPECT_NEAR(student_t_two_sided_p(2.228138852, 10), 0.05, 1e-8);
  EXPECT_EQ(student_t_two_sided_p(std::numeric_limits<double>::infinity(), 4), 0.0);
  EXPECT_TRUE(std::isnan(student_t_two_sided_p(1.0, 0)));
}

TEST(PairedStatistics, ExactSignTest) {
  EXPECT_DOUBLE_EQ(sign_test_p(4, 5), 2 * (1 + 5) / 32.0);        // 4 of 5: 0.375
  EXPECT_DOUBLE_EQ(sign_test_p(5, 5), 2 / 32.0);                  // 5 of 5: 0.0625
  EXPECT_DOUBLE_EQ(sign_test_p(4, 6), 2 * (1 + 6 + 15) / 64.0);   // 4 of 6: 0.6875 (one-sided 0.34)
  EXPECT_DOUBLE_EQ(sign_test_p(0, 3), 2 / 8.0);
  EXPECT_DOUBLE_EQ(sign_test_p(2, 4), 1.0);  // capped
  EXPECT_DOUBLE_EQ(sign_test_p(0, 0), 1.0);
  EXPECT_NEAR(sign_test_p(30, 40), 2 * 0.0011107168866, 1e-12);  // large n, in logs
}

TEST(PairedStatistics, PairedSampleByHand) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const PairedStats s = paired_stats({1.0, 2.0, 3.0, -0.5, nan});
  EXPECT_EQ(s.n, 4);  // the NaN is left out
  EXPECT_DOUBLE_EQ(s.mean, 1.375);
  // Σ(d − mean)² = 0.140625 + 0.390625 + 2.640625 + 3.515625 = 6.6875; SD = √(6.6875/3)
  EXPECT_NEAR(s.std, std::sqrt(6.6875 / 3), 1e-14);
  EXPECT_NEAR(s.std_error, std::sqrt(6.6875 / 3) / 2, 1e-14);
  EXPECT_EQ(s.positive, 3);
  EXPECT_EQ(s.negative, 1);
  EXPECT_DOUBLE_EQ(s.sign_p, 2 * (1 + 4) / 16.0);
  const double u = (1.375 / s.std_error) / std::sqrt(3.0);
  EXPECT_NEAR(s.t_p, 1 - 2 / kPi * (std::atan(u) + u / (1 + u * u)), 1e-12);

  const PairedStats equal = paired_stats({0.5, 0.5, 0.5});
  EXPECT_EQ(equal.std_error, 0.0);
  EXPECT_EQ(equal.t_p, 0.0);  // t infinite
  const PairedStats zero = paired_stats({0.0, 0.0});
  EXPECT_EQ(zero.t_p, 1.0);   // 0/0: no evidence of a difference
  EXPECT_EQ(zero.sign_p, 1.0);
  const PairedStats one = paired_stats({2.0});
  EXPECT_EQ(one.n, 1);
  EXPECT_TRUE(std::isnan(one.std_error));
  EXPECT_TRUE(std::isnan(one.t_p));
  EXPECT_DOUBLE_EQ(one.sign_p, 1.0);
  EXPECT_EQ(paired_stats({}).n, 0);
  EXPECT_TRUE(std::isnan(paired_stats({}).sign_p));
}

}  // namespace statistics_test
