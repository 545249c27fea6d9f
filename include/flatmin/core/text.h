#pragma once
// Small text helpers the commands share for their printed lines and JSON records.

#include <cstdio>
#include <ctime>
#include <string>

namespace flatmin {

/// One number, printf-style ("%.4g").
inline std::string format_number(double value, const char* format) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

/// A fraction as a percentage with two decimals ("93.70%").
inline std::string percent(double fraction) { return format_number(100.0 * fraction, "%.2f") + "%"; }

/// Now, as ISO 8601 UTC ("2026-11-24T23:59:48Z").
inline std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buffer;
}

}  // namespace flatmin
