#include "flatmin/reports/statistics.h"

#include <algorithm>
#include <cmath>

namespace flatmin::reports {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The continued fraction of I_x(a, b) by the modified Lentz method; converges fast for x < (a+1)/(a+b+2).
double beta_continued_fraction(double x, double a, double b) {
  constexpr double kTiny = 1e-300, kEpsilon = 1e-15;
  const double qab = a + b, qap = a + 1, qam = a - 1;
  double c = 1, d = 1 - qab * x / qap;
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= 1000; ++m) {
    const double m2 = 2.0 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    const double delta = d * c;
    h *= delta;
    if (std::fabs(delta - 1) < kEpsilon) break;
  }
  return h;
}

}  // namespace

double regularized_incomplete_beta(double x, double a, double b) {
  if (!(x >= 0 && x <= 1 && a > 0 && b > 0)) return kNaN;
  if (x == 0 || x == 1) return x;
  const double front =
      std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x));
  // The fraction converges on the side of the mean; the other side by symmetry I_x(a,b) = 1 − I_{1−x}(b,a).
  if (x < (a + 1) / (a + b + 2)) return front * beta_continued_fraction(x, a, b) / a;
  return 1 - front * beta_continued_fraction(1 - x, b, a) / b;
}

double student_t_two_sided_p(double t, double df) {
  if (std::isnan(t) || !(df > 0)) return kNaN;
  if (std::isinf(t)) return 0;
  return regularized_incomplete_beta(df / (df + t * t), df / 2, 0.5);
}

double sign_test_p(int64_t positive, int64_t n) {
  if (n <= 0) return 1;
  const int64_t k = std::min(positive, n - positive);
  // Σ_{i ≤ k} C(n, i) / 2^n, each term in logs (n may be large).
  double tail = 0;
  for (int64_t i = 0; i <= k; ++i)
    tail += std::exp(std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0) - n * std::log(2.0));
  return std::min(1.0, 2 * tail);
}

PairedStats paired_stats(const std::vector<double>& differences) {
  PairedStats s;
  std::vector<double> d;
  for (double v : differences)
    if (std::isfinite(v)) d.push_back(v);
  s.n = static_cast<int64_t>(d.size());
  if (s.n == 0) return s;
  double sum = 0;
  for (double v : d) {
    sum += v;
    s.positive += v > 0;
    s.negative += v < 0;
  }
  s.mean = sum / static_cast<double>(s.n);
  s.sign_p = sign_test_p(s.positive, s.positive + s.negative);
  if (s.n < 2) return s;
  double squares = 0;
  for (double v : d) squares += (v - s.mean) * (v - s.mean);
  s.std = std::sqrt(squares / static_cast<double>(s.n - 1));
  s.std_error = s.std / std::sqrt(static_cast<double>(s.n));
  if (s.std_error == 0) s.t_p = s.mean == 0 ? 1.0 : 0.0;
  else s.t_p = student_t_two_sided_p(s.mean / s.std_error, static_cast<double>(s.n - 1));
  return s;
}

}  // namespace flatmin::reports
