#pragma once
/// Paired comparisons of two methods over seeds that share data, initialisation and order: the per-seed
/// differences, their mean and standard error, the sign count, and two-sided p-values of the paired t test
/// and the exact sign test. Standard library only.

#include <cstdint>
#include <limits>
#include <vector>

namespace flatmin::reports {

/// I_x(a, b), the regularised incomplete beta function, for 0 ≤ x ≤ 1 and a, b > 0 (a continued fraction,
/// accurate to ~1e-14); NaN outside that domain.
double regularized_incomplete_beta(double x, double a, double b);

/// P(|T| ≥ |t|) for Student's t with `df` > 0 degrees of freedom: I_{df/(df+t²)}(df/2, 1/2). 0 for an
/// infinite t; NaN when t or df is NaN or df ≤ 0.
double student_t_two_sided_p(double t, double df);

/// The exact two-sided sign test of `positive` positive among `n` non-zero differences:
/// min(1, 2·P(X ≤ min(positive, n − positive))), X ~ Binomial(n, 1/2); 1 when n = 0.
double sign_test_p(int64_t positive, int64_t n);

/// Statistics of per-seed paired differences (a − b). Non-finite differences are left out.
struct PairedStats {
  static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  int64_t n = 0;                  ///< finite differences
  double mean = kNaN;             ///< mean difference
  double std = kNaN;              ///< their sample standard deviation (n − 1); NaN for n < 2
  double std_error = kNaN;        ///< std / √n
  int64_t positive = 0, negative = 0;  ///< the sign count; ties (zero differences) are neither
  double t_p = kNaN;              ///< paired t test, two-sided, n − 1 degrees of freedom; NaN for n < 2
  double sign_p = kNaN;           ///< exact sign test over the non-zero differences, two-sided; NaN for n = 0
};

/// The paired statistics of `differences`. When all differences are equal the t statistic is undefined
/// (0/0: p = 1) or infinite (p = 0).
PairedStats paired_stats(const std::vector<double>& differences);

}  // namespace flatmin::reports
