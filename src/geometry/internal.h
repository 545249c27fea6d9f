#pragma once
// Helpers the geometry estimators share (private to src/geometry).

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>

namespace flatmin::geometry::detail {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// printf-style formatting of one number, for progress and report lines.
inline std::string fmt(const char* format, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

// Running mean and variance (Welford). With fewer than two values the standard error is unknown:
// infinity; callers that report something else then say so where they read it.
struct Running {
  int64_t n = 0;
  double mean = 0, m2 = 0;
  void add(double x) {
    ++n;
    const double d = x - mean;
    mean += d / static_cast<double>(n);
    m2 += d * (x - mean);
  }
  double variance() const { return n > 1 ? m2 / static_cast<double>(n - 1) : 0.0; }
  double std() const { return std::sqrt(variance()); }
  double std_error() const {
    return n > 1 ? std() / std::sqrt(static_cast<double>(n)) : std::numeric_limits<double>::infinity();
  }
};

}  // namespace flatmin::geometry::detail
