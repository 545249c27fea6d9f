#pragma once
// Option checks whose messages say what is wrong in words ("must be in [0, 1)"), not as CLI11's numeric
// ranges, and which reject a non-number as such.

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include <CLI/CLI.hpp>

namespace flatmin::cli {

/// A finite number in the interval from lo to hi, each end open or closed.
inline CLI::Validator number_between(double lo, double hi, bool lo_closed = true, bool hi_closed = true) {
  const bool unbounded = hi == std::numeric_limits<double>::infinity();
  const std::string range = unbounded ? std::string(lo_closed ? ">= " : "> ") + CLI::detail::to_string(lo)
                                      : std::string("in ") + (lo_closed ? "[" : "(") + CLI::detail::to_string(lo) +
                                            ", " + CLI::detail::to_string(hi) + (hi_closed ? "]" : ")");
  return CLI::Validator(
      [=](std::string& input) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(input.c_str(), &end);
        if (input.empty() || *end != '\0') return "'" + input + "' is not a number";
        const bool ok = std::isfinite(v) && (lo_closed ? v >= lo : v > lo) && (hi_closed ? v <= hi : v < hi);
        return ok ? std::string() : "must be " + range + ", got " + input;
      },
      range);
}

inline CLI::Validator number_at_least(double lo) {
  return number_between(lo, std::numeric_limits<double>::infinity());
}

/// An integer in [lo, hi].
inline CLI::Validator integer_in(long long lo, long long hi = std::numeric_limits<long long>::max()) {
  const std::string range = hi == std::numeric_limits<long long>::max()
                                ? ">= " + std::to_string(lo)
                                : "in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  return CLI::Validator(
      [=](std::string& input) -> std::string {
        char* end = nullptr;
        errno = 0;
        const long long v = std::strtoll(input.c_str(), &end, 10);
        if (input.empty() || *end != '\0' || errno == ERANGE) return "'" + input + "' is not an integer";
        return v >= lo && v <= hi ? std::string() : "must be an integer " + range + ", got " + input;
      },
      range);
}

}  // namespace flatmin::cli
